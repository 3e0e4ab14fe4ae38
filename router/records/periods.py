"""The archive as the events source of reports over any period.

The reports (ops/reports.py, ops/aggregates.py) count a period from the tenant's events in
stream order. The events stream keeps days; the archive keeps every entry it ever read
(`events`: the entry id, the event as JSON), so a period the stream no longer holds, and
that no daily rollup covers, is counted from here the same way, by the same code. The
source reads entries by their stream id (the time Redis added them), as the stream is read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec

from router import events

if TYPE_CHECKING:  # a type only: the source reads through the archive's pool
    from router.records.archive import Archive

log = logging.getLogger(__name__)

PAGE = 5000  # rows per read
_ORDER = "split_part(entry, '-', 1)::bigint, split_part(entry, '-', 2)::bigint"
_MS = "split_part(entry, '-', 1)::bigint"


def decode(entry: str, payload: dict) -> events.StateEvent | None:
    try:
        return msgspec.structs.replace(msgspec.convert(payload, events.StateEvent), id=entry)
    except msgspec.ValidationError:
        return None  # an event type newer than this code: not ours to count (as from the stream)


class ArchivedEvents:
    """A tenant's archived events, read as ops.aggregates reads the stream."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    async def read_events(self, tenant: str, start_ms: int, end_ms: int) -> AsyncIterator[events.StateEvent]:
        """State events added in [start_ms, end_ms), oldest first."""
        after = (start_ms, -1)
        while True:
            async with self.archive.pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT entry, payload FROM events WHERE tenant = %s AND {_MS} < %s"
                    f" AND ({_ORDER}) > (%s, %s) ORDER BY {_ORDER} LIMIT %s",
                    (tenant, end_ms, after[0], after[1], PAGE),
                )
                rows = await cur.fetchall()
            for entry, payload in rows:
                event = decode(entry, payload)
                if event is not None:
                    yield event
            if len(rows) < PAGE:
                return
            ms, _, seq = rows[-1][0].partition("-")
            after = (int(ms), int(seq or 0))

    async def presence_before(self, tenant: str, start_ms: int, lookback_ms: int) -> dict[str, str]:
        """Each agent's last presence change before start_ms (within lookback_ms)."""
        async with self.archive.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT DISTINCT ON (agent) agent, payload FROM events WHERE tenant = %s AND type = 'presence'"
                f" AND {_MS} < %s AND {_MS} >= %s ORDER BY agent, {_ORDER} DESC",
                (tenant, start_ms, max(0, start_ms - lookback_ms)),
            )
            rows = await cur.fetchall()
        return {agent: str(payload.get("presence", "")) for agent, payload in rows if agent}

    async def complete(self, tenant: str, start_ms: int) -> bool:
        """Whether the archive holds the whole period: its first entry is no later than the
        period's start (retention deletes the oldest; an archive started later lacks what
        the stream had dropped before)."""
        async with self.archive.pool.connection() as conn:
            cur = await conn.execute(f"SELECT min({_MS}) FROM events WHERE tenant = %s", (tenant,))
            first = (await cur.fetchone())[0]
        return first is not None and first <= start_ms
