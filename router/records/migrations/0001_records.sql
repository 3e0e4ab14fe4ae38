-- The system of record: what Redis holds of each tenant's customers, conversations and
-- their histories, kept for years. Every row is keyed by the tenant and our own id (a
-- ULID, a stream entry id), so the archive writes with upserts: a redelivered or
-- replayed event changes nothing. Times are timestamptz (microseconds, so a Redis
-- millisecond time comes back exact).

CREATE EXTENSION IF NOT EXISTS pg_trgm;  -- substring search (Chinese, Japanese, partial addresses)

CREATE TABLE customers (
    tenant        text NOT NULL,
    id            text NOT NULL,
    name          text NOT NULL DEFAULT '',  -- the name an agent gave
    channel_name  text NOT NULL DEFAULT '',  -- the newest name a channel gave
    last_agent    text NOT NULL DEFAULT '',
    last_seen     timestamptz,
    record        jsonb NOT NULL DEFAULT '{}',  -- the Redis hash as it was last archived
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);

-- An address ("phone:+15551230000", "email:a@b.c") and the customer it belongs to.
CREATE TABLE identities (
    tenant    text NOT NULL,
    identity  text NOT NULL,
    customer  text NOT NULL,
    PRIMARY KEY (tenant, identity)
);
CREATE INDEX identities_customer ON identities (tenant, customer);
CREATE INDEX identities_trgm ON identities USING gin (identity gin_trgm_ops);

CREATE TABLE conversations (
    tenant           text NOT NULL,
    id               text NOT NULL,
    customer         text NOT NULL DEFAULT '',
    channel          text NOT NULL DEFAULT '',  -- the channel it began on
    address          text NOT NULL DEFAULT '',
    queue            text NOT NULL DEFAULT '',
    agent            text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT '',
    kind             text NOT NULL DEFAULT '',
    disposition      text NOT NULL DEFAULT '',
    promise_amount   numeric(14, 2),            -- a promise to pay's terms (disposition promise_to_pay)
    promise_date     date,
    campaign         text NOT NULL DEFAULT '',
    created_at       timestamptz,
    answered_at      timestamptz,
    closed_at        timestamptz,
    last_message_at  timestamptz,
    record           jsonb NOT NULL DEFAULT '{}',  -- the Redis hash as it was last archived
    digest           text NOT NULL DEFAULT '',     -- of what Redis held when archived (eviction checks it)
    archived_at      timestamptz NOT NULL DEFAULT now(),
    evicted_at       timestamptz,                  -- gone from Redis since: this is the only copy
    PRIMARY KEY (tenant, id)
);
CREATE INDEX conversations_customer ON conversations (tenant, customer, created_at);
CREATE INDEX conversations_created ON conversations (tenant, created_at);
CREATE INDEX conversations_closed ON conversations (tenant, closed_at) WHERE evicted_at IS NULL AND state = 'closed';

-- A conversation's history: customers' messages (in), replies (out), agents' notes (note).
CREATE TABLE messages (
    tenant         text NOT NULL,
    id             text NOT NULL,
    conversation   text NOT NULL,
    position       integer NOT NULL,  -- its place in the conversation's history
    kind           text NOT NULL,     -- in | out | note
    channel        text NOT NULL DEFAULT '',
    occurred_at    timestamptz NOT NULL,
    body           text NOT NULL DEFAULT '',
    subject        text NOT NULL DEFAULT '',
    address        text NOT NULL DEFAULT '',
    name           text NOT NULL DEFAULT '',
    agent          text NOT NULL DEFAULT '',
    contact_kind   text NOT NULL DEFAULT 'message',
    attachments    jsonb NOT NULL DEFAULT '[]',
    metadata       jsonb NOT NULL DEFAULT '{}',
    -- a reply's delivery, as its provider last reported it
    delivery_status  text NOT NULL DEFAULT '',
    delivery_error   text NOT NULL DEFAULT '',
    provider_id      text NOT NULL DEFAULT '',
    attempts         integer NOT NULL DEFAULT 0,
    search           tsvector GENERATED ALWAYS AS (to_tsvector('simple', subject || ' ' || body)) STORED,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX messages_conversation ON messages (tenant, conversation, position);
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_body_trgm ON messages USING gin (body gin_trgm_ops);

-- The events streams' entries: the audit trail, one row per entry, kept after the
-- stream is trimmed.
CREATE TABLE events (
    tenant        text NOT NULL,
    entry         text NOT NULL,  -- the stream entry id
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    conversation  text NOT NULL DEFAULT '',
    agent         text NOT NULL DEFAULT '',
    payload       jsonb NOT NULL,
    PRIMARY KEY (tenant, entry)
);
CREATE INDEX events_conversation ON events (tenant, conversation) WHERE conversation <> '';
CREATE INDEX events_time ON events (tenant, occurred_at);

-- Campaign outcomes: each campaign conversation's ending (its disposition, a promise's terms).
CREATE VIEW campaign_outcomes AS
    SELECT tenant, campaign, id AS conversation, customer, disposition, promise_amount, promise_date, closed_at
    FROM conversations
    WHERE campaign <> '';
