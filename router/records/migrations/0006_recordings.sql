-- Calls' recordings (a voicemail's, as the voice channel adds it to its message: the
-- recording's provider id and duration in the message's metadata, its audio as the message's
-- attachment), one row each, so they can be listed and kept for their own period.
CREATE TABLE recordings (
    tenant        text NOT NULL,
    id            text NOT NULL,  -- the provider's recording id (Twilio's RE...)
    conversation  text NOT NULL,
    message       text NOT NULL,  -- the voice message it belongs to
    url           text NOT NULL DEFAULT '',  -- where its audio is ('' once expired by retention)
    content_type  text NOT NULL DEFAULT '',
    duration_s    integer,
    occurred_at   timestamptz NOT NULL,
    expired_at    timestamptz,  -- its audio's retention ended (the row stays with its conversation)
    PRIMARY KEY (tenant, id)
);
CREATE INDEX recordings_conversation ON recordings (tenant, conversation);
CREATE INDEX recordings_time ON recordings (tenant, occurred_at);
