"""Backfill (router/records/backfill.py): a conversation whose events were trimmed before
the archive first ran is archived from what Redis holds, and then evicted like any other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router import conversations, events
from router.records import backfill
from router.records.archive import Archive
from tests.factories import World, world
from tests.router.test_records_archive import DAY_MS, DEPLOYMENT, closed_conversation, events_entries
from workers import archive as archive_worker


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(DEPLOYMENT)
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


async def evict(w: World) -> dict[str, int]:
    return await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)


async def test_a_conversation_trimmed_before_the_archive_ran_is_backfilled_then_evicted(w: World) -> None:
    early = await closed_conversation(w, address="+15551230001", body="before the archive")
    await w.store.redis.xtrim(w.keys.events, maxlen=0)  # its events are gone before the archive first read them
    late = await closed_conversation(w, address="+15551230002", body="after")
    await archive_worker.write_batch(w.store, await events_entries(w))
    assert await w.store.archive.conversation(w.tenant.id, early) is None
    assert (await evict(w)).get("evicted") == 1  # only the one the archive knows

    assert await backfill.backfill(w.store, w.tenant.id) == (1, 1)  # the evicted one is no longer in Redis
    assert await backfill.backfill(w.store, w.tenant.id) == (1, 0)  # once is enough

    assert (await evict(w)).get("evicted") == 1
    assert not await w.store.redis.exists(w.keys.conversation(early))
    assert next(e.body for e in await conversations.history(w.store, w.tenant.id, early)) == "before the archive"
    assert (await conversations.get(w.store, w.tenant.id, late))["state"] == "closed"
