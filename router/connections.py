"""redis-py's asyncio connections and blocking pool, without their per-command overhead.

Every Redis call in a process goes through these: a webhook's ingest, a routing
worker's pipelines, the inbox. redis-py's asyncio client builds each command in
Python (its sync client can use hiredis for that) and its blocking pool takes an
asyncio.Condition and a timeout on every command, wanted only when all its
connections are in use. Measured with `python -m ops.bench routing`: a webhook's
ingest went from about 73 to 52 us of CPU per call (a bare XADD: 48).

The pool uses parts of redis-py's pool that are not public API (as of redis-py
8.1, the version pyproject.toml asks for); tests/router/test_connections.py
checks the behaviour this relies on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of Python, byte for byte as redis-py packs them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # hiredis encodes text as strict UTF-8: with any other encoding, redis-py packs.
        self._packs = self.encoder.encoding.lower().replace("_", "-") in ("utf-8", "utf8") and (
            self.encoder.encoding_errors == "strict"
        )

    def pack_command(self, *args: Any) -> list[bytes]:
        # redis-py passes some two-word commands as one ("SCRIPT LOAD"); the server wants two.
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        if self._packs:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a value hiredis does not pack: redis-py packs it, or names it in a DataError
        return super().pack_command(*args)  # type: ignore[misc]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(chunk for command in commands for chunk in self.pack_command(*command))]


class PackedConnection(_HiredisPacking, aioredis.Connection):
    """A TCP connection (redis://)."""


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection (rediss://)."""


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix socket connection (unix://)."""


_PACKED = {
    aioredis.Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


class WaitingPool(aioredis.BlockingConnectionPool):
    """A BlockingConnectionPool that waits (up to `timeout`) only when every
    connection is in use: a burst of webhooks beyond the pool's size waits a
    moment instead of failing, and the usual case waits on no condition. (The fast path
    skips redis-py's connection metrics, which this project does not export.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        stock = kwargs.get("connection_class", aioredis.Connection)  # from_url picks it by the URL's scheme
        kwargs["connection_class"] = _PACKED.get(stock, stock)
        super().__init__(*args, **kwargs)
        self._waiters = 0

    def _maintenance(self) -> bool:
        return getattr(self, "_in_maintenance", False)

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> aioredis.Connection:
        if self._waiters or self._maintenance() or not self.can_get_connection():
            self._waiters += 1  # others wait already, or nothing is free: wait in turn
            try:
                return await super().get_connection()
            finally:
                self._waiters -= 1
        connection = self.get_available_connection()
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: aioredis.Connection) -> None:
        if self._maintenance():
            await super().release(connection)
            return
        await aioredis.ConnectionPool.release(self, connection)
        # Wake a waiter, counted before or during that release (a waiter checks for a
        # free connection before it sleeps, so one counted later finds this one).
        if self._waiters:
            async with self._condition:
                self._condition.notify()
