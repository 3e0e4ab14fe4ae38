-- The stored files a message's metadata names (an email's HTML body and original, `html` and
-- `raw`): retention and erasure ask whether any message still refers to one, as for attachments.
CREATE INDEX messages_metadata ON messages USING gin (metadata jsonb_path_ops);
