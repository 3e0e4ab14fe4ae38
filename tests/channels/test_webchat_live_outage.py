"""The web chat live fan-out rides out a store outage: one warning, a short capped
backoff, one line when the store is back, and the frames reach the tab after it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from channels.webchat import live
from router.keys import Keys
from router.store import StoreOutage
from tests.factories import world
from tests.workers.test_outages import Unreachable, assert_one_quiet_outage


class Stop(BaseException):
    """Ends the reader's loop (it has no stop event; a cancelled blocking read may
    linger until its block ends)."""


class Stopping:
    async def xread(self, *args, **kwargs):
        raise Stop


async def test_the_live_reader_waits_out_an_outage_and_then_delivers(monkeypatch, caplog):
    w = await world()
    real = w.store.redis
    quick = lambda what: StoreOutage(what, first_s=0.01, cap_s=0.02)  # noqa: E731
    monkeypatch.setattr(live, "StoreOutage", quick, raising=False)
    monkeypatch.setattr(live, "BLOCK_MS", 50)
    caplog.set_level(logging.INFO)
    hub = live.LiveHub(w.store, ["acme"])
    await hub.start()  # at the stream's end, before the store goes away
    w.store.redis = outage = Unreachable(real, failures=5)
    tab = live.Tab(ws=None)
    hub.register("acme", "visitor-1", tab)
    await real.xadd(Keys("acme").webchat_live, {"v": "visitor-1", "e": '{"type":"message"}'})
    try:
        frame = await asyncio.wait_for(tab.frames.get(), 5)
    finally:
        w.store.redis = Stopping()
        with pytest.raises(Stop):
            await asyncio.wait_for(hub._tasks[0], 5)
    assert frame == '{"type":"message"}'
    assert outage.failures == 0
    assert_one_quiet_outage(caplog)
