"""The dispatch retries loop and the campaigns worker ride out a store outage: one
warning, a capped backoff, one line when the store is back, never a traceback per
attempt; and the work goes on once the store answers again."""

from __future__ import annotations

import asyncio
import io
import logging

from redis.exceptions import ConnectionError as RedisConnectionError

from channels.transport import TemporaryFailure
from router.campaigns import registry
from router.campaigns.model import parse_campaign
from router.store import StoreOutage
from tests.factories import outbound, world
from tests.workers.test_campaign_results import AUDIENCE, CAMPAIGN, DEPLOYMENT, KEYS, NOON_NY
from tests.workers.test_dispatch import ScriptedSender, make_due, queued_entry
from workers import dispatch
from workers.campaigns import audience
from workers.campaigns import worker as campaign_worker


class Unreachable:
    """A client whose next `failures` calls fail as a Redis that is down does; the rest
    reach the real client."""

    def __init__(self, redis, failures: int) -> None:
        self._redis = redis
        self.failures = failures

    def __getattr__(self, name: str):
        real = getattr(self._redis, name)
        if not callable(real) or self.failures <= 0:
            return real
        self.failures -= 1
        error = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        if name == "pipeline":  # used as `async with`, not awaited

            def refused(*args, **kwargs):
                raise error

            return refused

        async def refused_async(*args, **kwargs):
            raise error

        return refused_async


def quick_outages(monkeypatch, module) -> None:
    monkeypatch.setattr(module, "StoreOutage", lambda what: StoreOutage(what, first_s=0.01, cap_s=0.02), raising=False)


def assert_one_quiet_outage(caplog) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    unreachable = [r for r in caplog.records if "store unreachable, retrying" in r.getMessage()]
    assert len(unreachable) == 1 and unreachable[0].levelno == logging.WARNING
    assert len([r for r in caplog.records if "store back" in r.getMessage()]) == 1


async def wait_for(condition, seconds: float = 5.0) -> None:
    for _ in range(int(seconds * 100)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not done within {seconds} s")


async def test_the_dispatch_retries_loop_waits_out_an_outage_and_then_sends(monkeypatch, caplog):
    w = await world()
    message = outbound(body="rate limited")
    dispatcher = dispatch.Dispatcher(w.store, {"sms": ScriptedSender(w.store, TemporaryFailure("429"))})
    await dispatcher.handle([await queued_entry(w.store, message)])
    await make_due(w.store, message)
    real = w.store.redis
    w.store.redis = Unreachable(real, failures=5)
    quick_outages(monkeypatch, dispatch)
    monkeypatch.setattr(dispatch, "RETRY_POLL_S", 0.01)
    caplog.set_level(logging.INFO)

    stop = asyncio.Event()
    loop = asyncio.create_task(dispatch.retry_loop(dispatcher, w.deployment, stop))

    async def sent() -> bool:
        assert not loop.done(), loop
        return await real.hget(KEYS.delivery(message.id), "status") == b"sent"

    await wait_for(sent)
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert w.store.redis.failures == 0
    assert await real.xlen(KEYS.outbox) == 1
    assert_one_quiet_outage(caplog)


async def test_the_campaigns_worker_waits_out_an_outage_and_then_sends(monkeypatch, caplog):
    w = await world(DEPLOYMENT)
    campaign = parse_campaign(CAMPAIGN)
    await registry.create(w.store, w.deployment, campaign)
    await audience.import_csv(w.store, campaign, io.StringIO(AUDIENCE))
    await registry.change(w.store, "acme", "dues", "launch", deployment=w.deployment)
    real = w.store.redis
    w.store.redis = Unreachable(real, failures=5)
    quick_outages(monkeypatch, campaign_worker)
    caplog.set_level(logging.INFO)

    worker = campaign_worker.CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    async def sent() -> bool:
        assert not running.done(), running  # the outage must not end the worker
        return await real.xlen(KEYS.outbound) == 1

    await wait_for(sent)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert w.store.redis.failures == 0
    assert_one_quiet_outage(caplog)
