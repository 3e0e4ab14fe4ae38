-- Retention per kind and erasure remove stored files (router/records/retention.py): a file
-- of the attachment store is shared by content, so one goes only when no other message
-- refers to it. This index answers "does any message refer to store:<sha256>".
CREATE INDEX messages_attachments ON messages USING gin (attachments jsonb_path_ops);
