"""The inbox's live feed rides out a store outage: one warning, a short capped
backoff, one line when the store is back, and the notices flow again."""

from __future__ import annotations

import asyncio
import logging

from router import events
from router.app.inbox import live
from router.keys import Keys
from router.store import StoreOutage
from tests.factories import world
from tests.workers.test_outages import Unreachable, assert_one_quiet_outage


async def test_the_inbox_feed_waits_out_an_outage_and_then_delivers(monkeypatch, caplog):
    w = await world()
    real = w.store.redis
    w.store.redis = Unreachable(real, failures=5)
    quick = lambda what: StoreOutage(what, first_s=0.01, cap_s=0.02)  # noqa: E731
    monkeypatch.setattr(live, "StoreOutage", quick, raising=False)
    monkeypatch.setattr(live, "BLOCK_MS", 50)
    caplog.set_level(logging.INFO)
    hub = live.Hub(w.store)
    queue: asyncio.Queue = asyncio.Queue()
    hub.subscribe("acme", queue)
    queued = events.Queued(tenant="acme", occurred_at=1, queue="support", conversation="c1")
    try:
        async with asyncio.timeout(5):
            while queue.empty():  # the feed starts at the stream's end: added until one is read
                await real.xadd(Keys("acme").events, {"e": events.encode(queued)})
                await asyncio.sleep(0.05)
    finally:
        await hub.close()
    assert queue.get_nowait().payload["type"] == "Queued"
    assert w.store.redis.failures == 0
    assert_one_quiet_outage(caplog)
