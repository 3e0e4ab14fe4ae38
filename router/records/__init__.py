"""The system of record: PostgreSQL behind Redis.

Redis holds the hot set (open conversations, and closed ones for CONTACTROUTER_HOT_DAYS);
PostgreSQL holds everything, for years. The `archive` process (workers/archive.py) copies
what the events stream says changed into it, and evicts from Redis what has been closed
long enough and is confirmed archived. Reading goes through router.conversations, which
asks the archive (`Store.archive`) for what Redis no longer has.

- migrate.py: the versioned schema (migrations/NNNN_name.sql) and `contactrouter db upgrade`
- snapshot.py: a conversation's records as Redis holds them, and their digest
- archive.py: the connection pool, the idempotent writes and the reads
"""
