"""Backfill: the conversations Redis holds that the archive has never written.

The archive writes a conversation when an events entry names it. A conversation whose
entries were trimmed from the stream before the archive first ran is in Redis (its hash,
its history, its replies' delivery records) but no entry will ever name it again, so it
would be neither archived nor evicted. `contactrouter db backfill --tenant T` finds them by
scanning the tenant's conversation keys and archives each as Redis holds it now; the
eviction sweep then treats them as any other. What cannot come back is the trimmed events
themselves: the audit trail of those conversations starts at the backfill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.keys import Keys
from router.store import Store, text

if TYPE_CHECKING:
    from router.records.archive import Archive

BATCH = 200  # conversations looked up and archived per transaction


async def _missing(archive: Archive, tenant: str, conversations: list[str]) -> list[str]:
    async with archive.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM conversations WHERE tenant = %s AND id = ANY(%s)", (tenant, conversations)
        )
        have = {row[0] for row in await cur.fetchall()}
    return [c for c in conversations if c not in have]


async def backfill(store: Store, tenant: str) -> tuple[int, int]:
    """Archive the tenant's conversations Redis holds and the archive lacks; (looked at, archived)."""
    archive = store.archive
    if archive is None:
        raise RuntimeError("backfill needs the archive (DATABASE_URL)")
    prefix = Keys(tenant).conversation("")
    seen = written = 0
    batch: list[str] = []

    async def flush() -> None:
        nonlocal written
        missing = await _missing(archive, tenant, batch)
        if missing:
            written += len(await archive.archive(store, tenant, conversations=missing))
        batch.clear()

    async for raw in store.redis.scan_iter(match=f"{prefix}*", count=1000):
        conversation = text(raw)[len(prefix) :]
        if ":" in conversation:  # its history, declines: another key of the same conversation
            continue
        seen += 1
        batch.append(conversation)
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    return seen, written
