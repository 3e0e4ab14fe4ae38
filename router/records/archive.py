"""The archive: PostgreSQL as the system of record (schema in migrations/).

Writes are upserts keyed by the tenant and our ids, so a redelivered or replayed batch
changes nothing. A conversation is written from a snapshot read from Redis inside the
transaction, after taking a lock on that conversation for the transaction: two archive
workers writing the same conversation run one after the other, and the later one reads
the later state, so an older snapshot never overwrites a newer one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from router import events
from router.attachments import AttachmentStore
from router.errors import ContactRouterError
from router.records import migrate, retention, search, snapshot
from router.store import Store

log = logging.getLogger(__name__)

UTC = dt.UTC
READ_TIMEOUT_S = 2.0  # a reader (a page, the CLI) waits this long for a connection, not the pool's 10 s
DOWN_FOR_S = 5.0  # after a failed read, reads fail at once for this long (a page does not wait again)


class ArchiveUnavailable(ContactRouterError):
    """The archive's database does not answer: what only it holds cannot be read now (the web answers 503)."""


# What PostgreSQL being away raises: a connection refused or dropped, no connection in time.
UNAVAILABLE: tuple[type[BaseException], ...] = (psycopg.OperationalError, PoolTimeout, ArchiveUnavailable)


def _at(ms: str | int | None) -> dt.datetime | None:
    """A Redis time (milliseconds since the epoch, as text) as a timestamptz."""
    try:
        value = int(ms or 0)
    except ValueError:
        return None
    return dt.datetime.fromtimestamp(value / 1000, UTC) if value else None


def _ms(when: dt.datetime) -> int:
    return round(when.timestamp() * 1000)


def _amount(value: str) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _pool(url: str, size: int) -> AsyncConnectionPool:
    # autocommit: a read is its own statement; writes open a transaction (conn.transaction())
    return AsyncConnectionPool(url, min_size=1, max_size=size, open=False, timeout=10, kwargs={"autocommit": True})


class Archive:
    """A pool of connections to the archive's database, and what is read and written there."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._down_until = 0.0

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a reader who is waiting (a page, a command): ArchiveUnavailable
        after READ_TIMEOUT_S, or at once while the last read failed less than DOWN_FOR_S ago."""
        if time.monotonic() < self._down_until:
            raise ArchiveUnavailable("archive unavailable: its database did not answer a moment ago")
        try:
            async with self.pool.connection(timeout=READ_TIMEOUT_S) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._down_until = time.monotonic() + DOWN_FOR_S
            log.warning("archive unavailable: %s: %s", type(exc).__name__, exc)
            raise ArchiveUnavailable("archive unavailable: its database does not answer") from exc

    @classmethod
    async def connect(cls, url: str, *, size: int = 4) -> Archive:
        """A pool that connects in the background: queries wait for the database (up to the
        pool's timeout) instead of start-up."""
        pool = _pool(url, size)
        await pool.open(wait=False)
        return cls(pool)

    @classmethod
    async def open(cls, url: str, *, size: int = 4) -> Archive:
        """Connect (waiting for the database to answer) and check its schema is this code's."""
        pool = _pool(url, size)
        try:
            await pool.open(wait=True, timeout=10)
        except BaseException:
            await pool.close()
            raise
        try:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
                have: list[int] = []
                if (await cur.fetchone())[0]:
                    have = [
                        r[0] for r in await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
                    ]
            migrate.check_versions(have)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # --- writing ---

    async def archive(
        self,
        store: Store,
        tenant: str,
        entries: Sequence[tuple[str, events.StateEvent]] = (),
        conversations: Iterable[str] = (),
    ) -> list[snapshot.Snapshot]:
        """Write the events stream's entries and the named conversations (as Redis holds
        them now) in one transaction; returns the snapshots written, once committed.
        A conversation Redis no longer has is left as the archive has it."""
        written = []
        async with self.pool.connection() as conn, conn.transaction():
            for conversation in sorted(set(conversations)):  # one order: two writers never deadlock
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{tenant}:{conversation}",)
                )
                taken = await snapshot.read(store, tenant, conversation)
                if taken is not None:
                    await _write_snapshot(conn, taken)
                    written.append(taken)
            if entries:
                await _write_events(conn, tenant, entries)
        return written

    async def evictable(self, tenant: str, closed_before_ms: int, limit: int = 500) -> list[str]:
        """Archived conversations closed before the cut-off that Redis may still hold."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM conversations WHERE tenant = %s AND state = 'closed' AND evicted_at IS NULL"
                " AND closed_at < %s ORDER BY closed_at LIMIT %s",
                (tenant, _at(closed_before_ms), limit),
            )
            return [row[0] for row in await cur.fetchall()]

    async def email_message_ids(self, tenant: str, conversations: Sequence[str]) -> dict[str, list[str]]:
        """The Message-IDs of the customers' mails in these conversations (their events say them)."""
        if not conversations:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT conversation, payload->>'provider_id' FROM events WHERE tenant = %s AND conversation = ANY(%s)"
                " AND type = 'message' AND payload->>'channel' = 'email' AND payload->>'direction' = 'in'",
                (tenant, list(conversations)),
            )
            found: dict[str, list[str]] = {}
            for conversation, message_id in await cur.fetchall():
                if message_id:
                    found.setdefault(conversation, []).append(message_id)
            return found

    async def mark_evicted(self, tenant: str, conversations: Sequence[str]) -> None:
        if not conversations:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE conversations SET evicted_at = now() WHERE tenant = %s AND id = ANY(%s) AND evicted_at IS NULL",
                (tenant, list(conversations)),
            )

    async def expire(
        self, tenant: str, closed_before_ms: int, *, batch: int = 1000, files: AttachmentStore | None = None
    ) -> dict[str, int]:
        """Retention: delete the conversations closed before the cut-off (those Redis no longer
        holds), their messages and events, and any other events that old, and from `files` the
        stored files of their messages nothing else refers to; how many went."""
        cutoff = _at(closed_before_ms)
        gone = {"conversations": 0, "messages": 0, "events": 0}
        refs: set[str] = set()
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT id FROM conversations WHERE tenant = %s AND closed_at < %s AND evicted_at IS NOT NULL"
                    " LIMIT %s FOR UPDATE SKIP LOCKED",
                    (tenant, cutoff, batch),
                )
                ids = [row[0] for row in await cur.fetchall()]
                if ids:
                    counted = await _delete_conversations(conn, tenant, ids, refs)
                    for name, count in counted.items():
                        gone[name] += count
            if len(ids) < batch:
                break
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM events WHERE tenant = %s AND occurred_at < %s", (tenant, cutoff))
            gone["events"] += cur.rowcount
        if refs:
            gone["attachments_files"] = await retention.remove_unreferenced(
                self, files, refs, unless_stored_since=time.time() - retention.STORED_LATELY_S
            )
        return gone

    async def erase_customer(
        self,
        tenant: str,
        customer: str,
        *,
        by: str,
        reason: str = "",
        redis: dict[str, int] | None = None,
        files: set[str] | None = None,
    ) -> tuple[dict[str, int], set[str]]:
        """Delete everything the archive holds of a customer, and say so in `erasures`, in
        one transaction; how many of each went (with `redis`'s counts, as erase() passes them),
        and the stored files of theirs (theirs in the archive, and `files`: those Redis held)
        that nothing else refers to, to be deleted once this has committed."""
        counts = dict(redis or {})
        refs = set(files or ())
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id FROM conversations WHERE tenant = %s AND customer = %s", (tenant, customer)
            )
            ids = [row[0] for row in await cur.fetchall()]
            counts.update(await _delete_conversations(conn, tenant, ids, refs))
            alone: set[str] = set()
            for ref in sorted(refs):  # their messages are gone (in this transaction): who else refers to it?
                cur = await conn.execute(retention.REFERRED, retention.referred_params(ref))
                if not (await cur.fetchone())[0]:
                    alone.add(ref)
            counts["attachments"] = len(alone)
            counts["attachments_shared_kept"] = len(refs) - len(alone)
            cur = await conn.execute("DELETE FROM identities WHERE tenant = %s AND customer = %s", (tenant, customer))
            counts["identities"] = cur.rowcount
            cur = await conn.execute("DELETE FROM customers WHERE tenant = %s AND id = %s", (tenant, customer))
            counts["customers"] = cur.rowcount
            if any(counts.values()):
                await conn.execute(
                    "INSERT INTO erasures (tenant, customer, erased_by, reason, erased) VALUES (%s, %s, %s, %s, %s)",
                    (tenant, customer, by, reason, Jsonb(counts)),
                )
        return counts, alone

    async def merge_customers(self, tenant: str, keep: str, absorb: str) -> int:
        """A merge of two customers (router.customers.merge) in the archive: the absorbed one's
        conversations, those only the archive holds too, and addresses become the kept one's;
        how many conversations moved. Running it again changes nothing."""
        async with self.pool.connection() as conn, conn.transaction():
            moved = await conn.execute(
                "UPDATE conversations SET customer = %s, record = jsonb_set(record, '{customer}', to_jsonb(%s::text))"
                " WHERE tenant = %s AND customer = %s",
                (keep, keep, tenant, absorb),
            )
            await conn.execute(
                "UPDATE identities SET customer = %s WHERE tenant = %s AND customer = %s", (keep, tenant, absorb)
            )
            await conn.execute("DELETE FROM customers WHERE tenant = %s AND id = %s", (tenant, absorb))
            return moved.rowcount

    async def erasures(self, tenant: str) -> list[dict[str, object]]:
        """The audit of erasures, oldest first."""
        async with self.reading() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT customer, erased_at, erased_by, reason, erased FROM erasures WHERE tenant = %s ORDER BY id",
                (tenant,),
            )
            return await cur.fetchall()

    # --- reading (router.conversations asks here for what Redis no longer has) ---

    async def conversation(self, tenant: str, conversation: str) -> dict[str, str] | None:
        async with self.reading() as conn:
            cur = await conn.execute(
                "SELECT record FROM conversations WHERE tenant = %s AND id = %s", (tenant, conversation)
            )
            row = await cur.fetchone()
        return dict(row[0]) if row else None

    async def history(self, tenant: str, conversation: str) -> list[events.HistoryEntry]:
        async with self.reading() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, kind, channel, occurred_at, body, subject, address, name, agent, attachments,"
                " contact_kind, metadata FROM messages WHERE tenant = %s AND conversation = %s ORDER BY position",
                (tenant, conversation),
            )
            rows = await cur.fetchall()
        return [msgspec.convert({**row, "occurred_at": _ms(row["occurred_at"])}, events.HistoryEntry) for row in rows]

    async def customer_conversations(self, tenant: str, customer: str) -> list[str]:
        """The customer's archived conversations, oldest first."""
        async with self.reading() as conn:
            cur = await conn.execute(
                "SELECT id FROM conversations WHERE tenant = %s AND customer = %s ORDER BY created_at, id",
                (tenant, customer),
            )
            return [row[0] for row in await cur.fetchall()]

    async def search(self, tenant: str, filters: search.Filters, *, offset: int = 0, limit: int = 50) -> search.Page:
        """A page of the tenant's archived conversations matching every filter, with the total."""
        return await search.search(self, tenant, filters, offset=offset, limit=limit)

    async def deliveries(self, tenant: str, messages: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Each archived reply's last delivery status and error."""
        if not messages:
            return {}
        async with self.reading() as conn:
            cur = await conn.execute(
                "SELECT id, delivery_status, delivery_error FROM messages WHERE tenant = %s AND id = ANY(%s)",
                (tenant, list(messages)),
            )
            return {row[0]: (row[1], row[2]) for row in await cur.fetchall()}


async def _delete_conversations(
    conn: AsyncConnection, tenant: str, ids: list[str], files: set[str] | None = None
) -> dict[str, int]:
    """Delete conversations with their messages and events; the stored files their messages
    referred to are added to `files`."""
    if not ids:
        return {"conversations": 0, "messages": 0, "events": 0}
    messages = await conn.execute(
        "DELETE FROM messages WHERE tenant = %s AND conversation = ANY(%s) RETURNING attachments, metadata",
        (tenant, ids),
    )
    if files is not None:
        for attachments, metadata in await messages.fetchall():
            files |= retention.stored_refs(attachments) | retention.metadata_refs(metadata)
    await conn.execute("DELETE FROM recordings WHERE tenant = %s AND conversation = ANY(%s)", (tenant, ids))
    await conn.execute("DELETE FROM survey_results WHERE tenant = %s AND conversation = ANY(%s)", (tenant, ids))
    evented = await conn.execute("DELETE FROM events WHERE tenant = %s AND conversation = ANY(%s)", (tenant, ids))
    gone = await conn.execute("DELETE FROM conversations WHERE tenant = %s AND id = ANY(%s)", (tenant, ids))
    return {"conversations": gone.rowcount, "messages": messages.rowcount, "events": evented.rowcount}


async def _write_snapshot(conn: AsyncConnection, taken: snapshot.Snapshot) -> None:
    tenant, record = taken.tenant, taken.record
    customer = taken.customer
    if customer and record.get("customer"):
        await conn.execute(
            "INSERT INTO customers (tenant, id, name, channel_name, last_agent, last_seen, record)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, id) DO UPDATE SET"
            " name = excluded.name, channel_name = excluded.channel_name, last_agent = excluded.last_agent,"
            " last_seen = excluded.last_seen, record = excluded.record, archived_at = now()",
            (
                tenant,
                record["customer"],
                customer.get("name", ""),
                customer.get("channel_name", ""),
                customer.get("last_agent", ""),
                _at(customer.get("last_seen")),
                Jsonb(customer),
            ),
        )
        idents = [name[6:] for name in customer if name.startswith("ident:")]
        if idents:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO identities (tenant, identity, customer) VALUES (%s, %s, %s)"
                    " ON CONFLICT (tenant, identity) DO UPDATE SET customer = excluded.customer",
                    [(tenant, ident, record["customer"]) for ident in idents],
                )
    await conn.execute(
        "INSERT INTO conversations (tenant, id, customer, channel, address, queue, agent, state, kind, disposition,"
        " promise_amount, promise_date, campaign, created_at, answered_at, closed_at, last_message_at, record, digest)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant, id) DO UPDATE SET customer = excluded.customer, channel = excluded.channel,"
        " address = excluded.address, queue = excluded.queue, agent = excluded.agent, state = excluded.state,"
        " kind = excluded.kind, disposition = excluded.disposition, promise_amount = excluded.promise_amount,"
        " promise_date = excluded.promise_date, campaign = excluded.campaign, created_at = excluded.created_at,"
        " answered_at = excluded.answered_at, closed_at = excluded.closed_at,"
        " last_message_at = excluded.last_message_at, record = excluded.record, digest = excluded.digest,"
        " archived_at = now(), evicted_at = NULL",
        (
            tenant,
            taken.conversation,
            record.get("customer", ""),
            record.get("channel", ""),
            record.get("address", ""),
            record.get("queue", ""),
            record.get("agent", ""),
            record.get("state", ""),
            record.get("kind", ""),
            record.get("disposition", ""),
            _amount(record.get("promise_amount", "")),
            _date(record.get("promise_date", "")),
            record.get("campaign", ""),
            _at(record.get("created_at")),
            _at(record.get("answered_at")),
            _at(record.get("closed_at")),
            _at(record.get("last_message_at") or record.get("created_at")),
            Jsonb(record),
            taken.digest,
        ),
    )
    recordings = [_recording(tenant, taken.conversation, entry) for entry in taken.entries]
    recordings += [_call_recording(tenant, taken.conversation, found) for found in taken.calls]
    if any(recordings):
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO recordings (tenant, id, conversation, message, url, content_type, duration_s, occurred_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, id) DO UPDATE SET"
                " conversation = excluded.conversation, message = excluded.message,"
                " url = CASE WHEN recordings.expired_at IS NULL THEN excluded.url ELSE '' END,"
                " content_type = excluded.content_type, duration_s = excluded.duration_s",
                [r for r in recordings if r],
            )
    rows = []
    for position, entry in enumerate(taken.entries):
        delivery = taken.deliveries.get(entry.id, {}) if entry.kind == "out" else {}
        rows.append(
            (
                tenant,
                entry.id,
                taken.conversation,
                position,
                entry.kind,
                entry.channel,
                _at(entry.occurred_at),
                entry.body,
                entry.subject,
                entry.address,
                entry.name,
                entry.agent,
                entry.contact_kind,
                Jsonb(msgspec.to_builtins(entry.attachments)),
                Jsonb(entry.metadata),
                # a reply with no delivery record yet is queued (router.app.inbox.pages says so too)
                delivery.get("status", "") or ("queued" if entry.kind == "out" else ""),
                delivery.get("error", ""),
                delivery.get("provider_id", ""),
                int(delivery.get("attempts") or 0),
            )
        )
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO messages (tenant, id, conversation, position, kind, channel, occurred_at, body, subject,"
                " address, name, agent, contact_kind, attachments, metadata, delivery_status, delivery_error,"
                " provider_id, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant, id) DO UPDATE SET conversation = excluded.conversation,"
                " position = excluded.position, delivery_status = excluded.delivery_status,"
                " delivery_error = excluded.delivery_error, provider_id = excluded.provider_id,"
                " attempts = excluded.attempts",
                rows,
            )


def _call_recording(tenant: str, conversation: str, found: dict[str, str]) -> tuple | None:
    """A call's recording (channels/voice/recording.py's hash) as a `recordings` row; a deleted one
    (its retention ended: a tombstone) has no audio left to point at."""
    duration = found.get("duration_s", "")
    deleted = found.get("state") == "deleted"
    return (
        tenant,
        found["sid"],
        conversation,
        "",  # a call's, not a message's
        "" if deleted else found.get("url", ""),
        "audio/wav" if found.get("url") else "",
        int(duration) if duration.isdigit() else None,
        _at(found.get("started_at")) or dt.datetime.now(UTC),
    )


def _recording(tenant: str, conversation: str, entry: events.HistoryEntry) -> tuple | None:
    """A voice message's recording as a `recordings` row (None: the entry has none)."""
    recording = entry.metadata.get("recording_sid", "")
    audio = next((a for a in entry.attachments if a.content_type.startswith("audio/")), None)
    if entry.channel != "voice" or not recording or audio is None:
        return None
    duration = entry.metadata.get("duration_s", "")
    return (
        tenant,
        recording,
        conversation,
        entry.id,
        audio.url,
        audio.content_type,
        int(duration) if duration.isdigit() else None,
        _at(entry.occurred_at),
    )


async def _write_events(conn: AsyncConnection, tenant: str, entries: Sequence[tuple[str, events.StateEvent]]) -> None:
    rows = []
    for entry_id, event in entries:
        payload = msgspec.to_builtins(event)
        rows.append(
            (
                tenant,
                entry_id,
                payload.get("type", ""),
                _at(event.occurred_at) or dt.datetime.now(UTC),
                event.conversation,
                getattr(event, "agent", "") or "",
                Jsonb(payload),
            )
        )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO events (tenant, entry, type, occurred_at, conversation, agent, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, entry) DO NOTHING",
            rows,
        )
    surveyed = [(entry_id, e) for entry_id, e in entries if isinstance(e, events.SurveyResult) and e.conversation]
    if surveyed:
        async with conn.cursor() as cur:
            await cur.executemany(_SURVEY_UPSERT, [_survey_row(tenant, entry_id, e) for entry_id, e in surveyed])


# A survey's newest answer wins, by its events entry id (a rating, then maybe a comment): a
# comment given alone keeps the rating, and an older entry delivered again changes nothing.
_ENTRY_ORDER = "(split_part({0}.entry, '-', 1)::bigint, split_part({0}.entry, '-', 2)::bigint)"
_SURVEY_UPSERT = (
    "INSERT INTO survey_results (tenant, conversation, rating, comment, queue, agent, low, sent_at, answered_at, entry)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, conversation) DO UPDATE SET"
    " rating = excluded.rating, comment = CASE WHEN excluded.comment <> '' THEN excluded.comment"
    " ELSE survey_results.comment END, queue = excluded.queue, agent = excluded.agent, low = excluded.low,"
    " sent_at = excluded.sent_at, answered_at = excluded.answered_at, entry = excluded.entry"
    f" WHERE {_ENTRY_ORDER.format('excluded')} > {_ENTRY_ORDER.format('survey_results')}"
)


def _survey_row(tenant: str, entry_id: str, event: events.SurveyResult) -> tuple:
    return (
        tenant,
        event.conversation,
        event.rating,
        event.comment,
        event.queue,
        event.agent,
        event.low,
        _at(event.sent_at),
        _at(event.occurred_at) or dt.datetime.now(UTC),
        entry_id,
    )
