"""The timers worker rides out a store outage: one warning, a capped backoff, one line
when the store is back; never a traceback per poll."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import ConnectionError as RedisConnectionError

from router.settings import Settings
from router.store import StoreOutage
from tests.factories import world
from workers import timers as timers_worker


async def test_an_outage_logs_one_warning_and_one_line_when_the_store_is_back(monkeypatch, caplog):
    w = await world()
    calls = 0
    back = asyncio.Event()

    async def run_due(store, tenant, **_options) -> int:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        back.set()
        return 0

    monkeypatch.setattr(timers_worker.timers, "run_due", run_due)
    monkeypatch.setattr(timers_worker, "StoreOutage", lambda what: StoreOutage(what, first_s=0.01, cap_s=0.05))
    waits: list[float] = []
    real_failed = StoreOutage.failed

    def failed(self, error, **kwargs):
        waits.append(real_failed(self, error, **kwargs))
        return waits[-1]

    monkeypatch.setattr(StoreOutage, "failed", failed)
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    worker = asyncio.create_task(timers_worker.run(w.store, w.deployment, Settings(consumer="t"), stop))
    await asyncio.wait_for(back.wait(), 5)
    stop.set()
    await asyncio.wait_for(worker, 5)

    assert waits == [0.01, 0.02, 0.04, 0.05]  # doubling, capped
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    unreachable = [r for r in caplog.records if "store unreachable, retrying" in r.getMessage()]
    assert len(unreachable) == 1 and unreachable[0].levelno == logging.WARNING
    assert len([r for r in caplog.records if "store back" in r.getMessage()]) == 1


async def test_a_sweep_failing_on_the_store_does_not_end_the_worker(monkeypatch):
    w = await world()
    monkeypatch.setattr(timers_worker, "SWEEP_EVERY_S", 0.0)
    monkeypatch.setattr(timers_worker, "StoreOutage", lambda what: StoreOutage(what, first_s=0.01, cap_s=0.01))
    sweeps = 0

    async def sweep(store, deployment) -> None:
        nonlocal sweeps
        sweeps += 1
        raise RedisConnectionError("Connection closed by server.")

    monkeypatch.setattr(timers_worker, "_sweep", sweep)
    stop = asyncio.Event()
    worker = asyncio.create_task(timers_worker.run(w.store, w.deployment, Settings(consumer="t"), stop))
    await asyncio.sleep(0.3)
    assert not worker.done(), worker
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert sweeps >= 2
