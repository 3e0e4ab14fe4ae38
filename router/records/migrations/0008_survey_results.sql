-- Satisfaction survey results (router/surveys.py): one row per surveyed conversation, from its
-- `survey_result` events (a rating, and a comment given with it or after). `entry` is the
-- newest such events entry written: an older one delivered again changes nothing.
CREATE TABLE survey_results (
    tenant        text NOT NULL,
    conversation  text NOT NULL,
    rating        integer NOT NULL,
    comment       text NOT NULL DEFAULT '',
    queue         text NOT NULL DEFAULT '',
    agent         text NOT NULL DEFAULT '',
    low           boolean NOT NULL DEFAULT false,
    sent_at       timestamptz,
    answered_at   timestamptz NOT NULL,
    entry         text NOT NULL,
    PRIMARY KEY (tenant, conversation)
);
CREATE INDEX survey_results_answered ON survey_results (tenant, answered_at);
