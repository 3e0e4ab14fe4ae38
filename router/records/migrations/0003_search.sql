-- Search across all history (router/records/search.py): by queue and agent within a date
-- range, and a part of an address or a subject (a trigram index: Chinese and Japanese
-- have no spaces to find words by, and an agent types part of a number).
CREATE INDEX conversations_queue ON conversations (tenant, queue, created_at);
CREATE INDEX conversations_agent ON conversations (tenant, agent, created_at);
CREATE INDEX conversations_address_trgm ON conversations USING gin (address gin_trgm_ops);
CREATE INDEX messages_subject_trgm ON messages USING gin (subject gin_trgm_ops);
