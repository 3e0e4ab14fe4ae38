-- Reports over any period read the archived events in stream order (router/records/periods.py):
-- an entry id is "<ms>-<seq>", the time Redis added it, then its place within that millisecond.
CREATE INDEX events_stream_order ON events (
    tenant, (split_part(entry, '-', 1)::bigint), (split_part(entry, '-', 2)::bigint)
);
