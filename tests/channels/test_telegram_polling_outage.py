"""Telegram polling rides out a store outage: one warning, a capped backoff, one line
when the store is back (not a warning per attempt, nor Telegram's long backoff), and
the updates that waited are stored."""

from __future__ import annotations

import asyncio
import logging

from channels.telegram import polling
from router.keys import Keys
from router.store import StoreOutage
from tests.channels import telegram_api
from tests.channels.test_telegram_polling import api, bodies, make_poller, w  # noqa: F401 (fixtures)
from tests.workers.test_outages import Unreachable, assert_one_quiet_outage, wait_for


async def test_a_poller_waits_out_a_store_outage_and_then_stores_the_update(
    api,  # noqa: F811
    w,  # noqa: F811
    make_poller,  # noqa: F811
    monkeypatch,
    caplog,
):
    api.push(telegram_api.message(text="still there?"))
    poller = make_poller()
    real = w.store.redis
    w.store.redis = Unreachable(real, failures=5)
    quick = lambda what: StoreOutage(what, first_s=0.01, cap_s=0.02)  # noqa: E731
    monkeypatch.setattr(polling, "StoreOutage", quick, raising=False)
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))

    async def stored() -> bool:
        assert not running.done(), running
        return await real.xlen(Keys("acme").inbound) == 1

    await wait_for(stored)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert w.store.redis.failures == 0
    assert await bodies(w) == ["still there?"]
    assert_one_quiet_outage(caplog)
