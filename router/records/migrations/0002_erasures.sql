-- What was erased, when and by whom: one row per erasure of a customer on request (GDPR
-- art. 17, PIPL art. 47). It names the customer's id and counts what went, never what it held.
CREATE TABLE erasures (
    tenant         text NOT NULL,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    customer       text NOT NULL,
    erased_at      timestamptz NOT NULL DEFAULT now(),
    erased_by      text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    erased         jsonb NOT NULL,  -- how many of each: conversations, messages, events, identities
    PRIMARY KEY (tenant, id)
);

