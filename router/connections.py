"""redis-py's asyncio connection and blocking pool, without their per-command overhead.

Every Redis call in a process goes through these: a webhook's ingest, a routing
worker's pipelines, the inbox. redis-py's asyncio client builds each command in
Python (its sync client can use hiredis for that) and its blocking pool takes an
asyncio.Condition and a timeout on every command, wanted only when all its
connections are in use. Measured with `python -m ops.bench routing`: the two
were about a fifth of a routing worker's time and of a webhook's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis


class PackedConnection(aioredis.Connection):
    """A connection whose commands are packed by hiredis (C) instead of Python."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # redis-py passes some two-word commands as one ("SCRIPT LOAD"); the server wants two.
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            # A value Redis cannot take (None, a bool, an object): redis-py's own
            # DataError names it.
            return super().pack_command(*args)

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(chunk for command in commands for chunk in self.pack_command(*command))]


class WaitingPool(aioredis.BlockingConnectionPool):
    """A BlockingConnectionPool that waits (up to `timeout`) only when every
    connection is in use: a burst of webhooks beyond the pool's size waits a
    moment instead of failing, and the usual case costs no lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", PackedConnection)
        super().__init__(*args, **kwargs)
        self._waiters = 0

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> aioredis.Connection:
        if self._waiters or self._in_maintenance or not self.can_get_connection():
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
        if self._in_maintenance:
            await super().release(connection)
            return
        await aioredis.ConnectionPool.release(self, connection)
        # Wake a waiter, counted before or during that release (a waiter checks for a
        # free connection before it sleeps, so one counted later finds this one).
        if self._waiters:
            async with self._condition:
                self._condition.notify()
