"""The store's connection class packs commands as redis-py does, and its pool
waits for a free connection only when all are in use."""

import asyncio

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError

from router.connections import PackedConnection, PackedSSLConnection, PackedUnixConnection, WaitingPool

ARGUMENT = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=50),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


async def until(condition, what: str, timeout_s: float = 5.0) -> None:
    """Poll condition() until it holds (a task got as far as the test needs); fail naming what did not happen."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.005)


def bytes_of(connection: aioredis.Connection, *args) -> bytes:
    return b"".join(connection.pack_command(*args))


@given(st.lists(ARGUMENT, max_size=12))
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(args):
    ours, theirs = PackedConnection(), aioredis.Connection()
    assert bytes_of(ours, "EVALSHA", *args) == bytes_of(theirs, "EVALSHA", *args)
    commands = [("SET", "k", *args), ("GET", "k")]
    assert b"".join(ours.pack_commands(commands)) == b"".join(theirs.pack_commands(commands))


@pytest.mark.parametrize("command", ["SCRIPT LOAD", b"SCRIPT LOAD"])
def test_a_two_word_command_goes_out_as_two_words(command):
    packed = bytes_of(PackedConnection(), command, "return 1")
    assert packed == bytes_of(aioredis.Connection(), command, "return 1")
    assert packed.startswith(b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n")


def test_text_in_another_encoding_is_packed_by_redis_py():
    ours = PackedConnection(encoding="latin-1")
    assert bytes_of(ours, "SET", "k", "café") == bytes_of(aioredis.Connection(encoding="latin-1"), "SET", "k", "café")
    assert b"caf\xe9" in bytes_of(ours, "SET", "k", "café")


@pytest.mark.parametrize(
    ("url", "packed", "kind"),
    [
        ("redis://127.0.0.1:6379/0", PackedConnection, aioredis.Connection),
        ("rediss://127.0.0.1:6380/0", PackedSSLConnection, SSLConnection),
        ("unix:///run/redis.sock", PackedUnixConnection, UnixDomainSocketConnection),
    ],
)
def test_every_kind_of_address_gets_a_packing_connection_of_its_kind(url, packed, kind):
    pool = WaitingPool.from_url(url)
    assert pool.connection_class is packed
    assert isinstance(pool.make_connection(), kind)


@pytest.mark.parametrize("bad", [None, True, object()])
def test_a_value_redis_cannot_take_is_refused_as_redis_py_refuses_it(bad):
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)


def test_values_hiredis_does_not_pack_are_packed_by_redis_py():
    value = bytearray(b"raw bytes")
    assert bytes_of(PackedConnection(), "SET", "k", value) == bytes_of(aioredis.Connection(), "SET", "k", value)


async def test_requests_beyond_the_pool_wait_for_a_connection_and_all_complete(redis_url):
    pool = WaitingPool.from_url(redis_url, max_connections=2, timeout=10)
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.delete("cr:{pool}:list")
        # Five blocking pops hold connections until something is pushed: two get one at once,
        # three wait; each push frees one, and a waiter takes it.
        pops = [asyncio.create_task(client.blpop(["cr:{pool}:list"], timeout=5)) for _ in range(5)]
        await until(lambda: pool._waiters == 3, "three pops waiting for a connection")
        assert len(pool._in_use_connections) == 2
        pusher = aioredis.Redis.from_url(redis_url)
        for n in range(5):
            await pusher.rpush("cr:{pool}:list", n)
        await pusher.aclose()
        values = sorted(int(v) for _key, v in await asyncio.gather(*pops))
        assert values == [0, 1, 2, 3, 4]
        assert pool._waiters == 0
    finally:
        await client.aclose()


async def test_a_request_that_finds_no_connection_in_time_fails_clearly(redis_url):
    pool = WaitingPool.from_url(redis_url, max_connections=1, timeout=0.2)
    client = aioredis.Redis(connection_pool=pool)
    try:
        held = asyncio.create_task(client.blpop(["cr:{pool}:empty"], timeout=1))
        await until(lambda: len(pool._in_use_connections) == 1, "the pop holding the only connection")
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.get("cr:{pool}:x")
        await held
        assert await client.get("cr:{pool}:x") is None  # and the pool serves again
    finally:
        await client.aclose()
