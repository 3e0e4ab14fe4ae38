"""router.store.read_streams: a live feed's one XREAD, riding out failures."""

import logging

from redis.exceptions import ConnectionError as RedisConnectionError

from router.settings import Settings
from router.store import StoreOutage, connect, read_streams

STREAM = "cr:{acme}:events"


def failing_once(store, error: Exception):
    real = store.redis.xread
    calls = {"n": 0}

    async def xread(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return await real(*args, **kwargs)

    store.redis.xread = xread


async def test_rows_come_back_as_xread_gives_them():
    store = connect(Settings())
    entry = await store.redis.xadd(STREAM, {"e": b"x"})
    rows = await read_streams(store, {STREAM: "0-0"}, StoreOutage("feed"), count=10, block_ms=1)
    assert [(s, [i for i, _ in entries]) for s, entries in rows] == [(STREAM.encode(), [entry])]


async def test_a_store_outage_returns_nothing_once_and_the_next_read_goes_on(caplog):
    store = connect(Settings())
    await store.redis.xadd(STREAM, {"e": b"x"})
    outage = StoreOutage("feed", first_s=0.01)
    failing_once(store, RedisConnectionError("Connection refused"))
    with caplog.at_level(logging.INFO):
        assert await read_streams(store, {STREAM: "0-0"}, outage, count=10, block_ms=1) == []
        assert outage.failures == 1
        assert len(await read_streams(store, {STREAM: "0-0"}, outage, count=10, block_ms=1)) == 1
    assert outage.failures == 0
    assert "feed: store unreachable" in caplog.text and "feed: store back" in caplog.text


async def test_any_other_failure_is_logged_with_its_streams_and_the_loop_reads_again(caplog, monkeypatch):
    store = connect(Settings())
    await store.redis.xadd(STREAM, {"e": b"x"})
    failing_once(store, ValueError("a reply it could not parse"))
    slept = []

    async def sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr("router.store.asyncio.sleep", sleep)
    assert await read_streams(store, {STREAM: "0-0"}, StoreOutage("feed"), count=10, block_ms=1) == []
    assert slept == [1.0]
    assert f"feed: reading {STREAM} failed; retrying" in caplog.text
    assert "a reply it could not parse" in caplog.text
    assert len(await read_streams(store, {STREAM: "0-0"}, StoreOutage("feed"), count=10, block_ms=1)) == 1


async def test_an_idle_feed_is_no_outage_when_redis_url_sets_a_short_read_timeout(redis_url, caplog):
    # The block asked for outlasts the client's read timeout: the read must end first, or an
    # idle stream reads as a store that does not answer ("store unreachable").
    store = connect(Settings(redis_url=f"{redis_url}?socket_timeout=1"))
    outage = StoreOutage("feed")
    try:
        with caplog.at_level(logging.WARNING):
            assert await read_streams(store, {"cr:{idle}:events": "$"}, outage, count=10, block_ms=1500) == []
    finally:
        await store.close()
    assert outage.failures == 0, caplog.text
    assert "unreachable" not in caplog.text


def test_blocking_reads_end_before_the_read_timeout():
    assert connect(Settings(redis_url="redis://127.0.0.1:1/0?socket_timeout=5")).blocking(5000) == 4000
    assert connect(Settings(redis_url="redis://127.0.0.1:1/0?socket_timeout=1")).blocking(5000) == 500
    assert connect(Settings(redis_url="redis://127.0.0.1:1/0")).blocking(5000) == 5000
