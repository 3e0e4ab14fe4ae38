"""The faults themselves: SIGKILL of a worker, a Redis restart, dropped client connections,
a PostgreSQL restart (under the archive).

Each runs at random moments of the load phase; what was done is counted, so the
report says what the pipeline survived.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis

from ops.faults._supervisor import Supervisor
from ops.postgres_server import PostgresServer
from ops.redis_server import RedisServer
from router.stopping import stopped

log = logging.getLogger(__name__)

RedisCrash = Literal["kill", "shutdown"]


@dataclass
class Injector:
    server: RedisServer
    supervisor: Supervisor
    rng: random.Random
    postgres: PostgresServer | None = None  # the archive's, when the drill runs one
    started: float = 0.0  # the event loop's time when the load began: fault moments count from it
    done: Counter = field(default_factory=Counter)  # fault -> times injected
    timeline: list[str] = field(default_factory=list)  # "12.3 s SIGKILL dispatch-1", to match with what went wrong

    def _note(self, what: str) -> None:
        at = asyncio.get_running_loop().time() - self.started
        self.timeline.append(f"{at:.2f} s {what} ({time.strftime('%H:%M:%S')})")

    async def kill_workers(self, roles: tuple[str, ...], every_s: float, stop: asyncio.Event) -> None:
        """SIGKILL a random worker of `roles`, at exponentially spaced moments (mean `every_s`)."""
        slots = [name for name, slot in self.supervisor.slots.items() if slot.role in roles]
        if not slots:
            return
        while not await stopped(stop, self.rng.expovariate(1 / every_s)):
            name = self.rng.choice(slots)
            if not self.supervisor.kill(name):
                continue  # still dead from the last kill: a kill of nothing is not counted
            self.done[f"SIGKILL {self.supervisor.slots[name].role}"] += 1
            self._note(f"SIGKILL {name}")
            log.info("killed %s", name)

    async def restart_redis(
        self, times: int, seconds: float, crash: RedisCrash, down_s: float, stop: asyncio.Event
    ) -> None:
        """Restart redis-server `times` times, once at a random moment of each equal slice of the run.

        kill: SIGKILL, as a crash of the process: only what it wrote to the AOF survives.
        Redis writes the AOF before it answers (always and everysec alike, unless a slow disk
        makes everysec postpone writes); what everysec leaves unfsynced is at risk only if the
        machine goes down, which no drill here does.
        shutdown: SIGTERM, a graceful SHUTDOWN that fsyncs the AOF first.
        The same port and directory are used again, so the AOF is read back on start.
        """
        for at in _moments(self.rng, times, seconds):
            if await _wait_until(stop, self.started + at):
                return
            self._note(f"redis {crash}")
            if crash == "kill":
                self.server.kill()
            else:
                self.server.stop()
            await asyncio.sleep(down_s)  # clients must wait out the outage
            await asyncio.to_thread(self.server.start)
            self.done[f"redis {crash}+start"] += 1
            self._note("redis up")
            log.info("restarted redis-server (%s)", crash)

    async def restart_postgres(self, times: int, seconds: float, down_s: float, stop: asyncio.Event) -> None:
        """Stop PostgreSQL (a fast shutdown: connections cut) and start it again on the same port
        and data, `times` times, once in each equal slice of the run: the archive must hold its
        batch, acknowledge nothing it did not commit, and catch up."""
        if self.postgres is None:
            return
        for at in _moments(self.rng, times, seconds):
            if await _wait_until(stop, self.started + at):
                return
            self._note("postgres stop")
            await asyncio.to_thread(self.postgres.halt)
            await asyncio.sleep(down_s)
            await asyncio.to_thread(self.postgres.start)
            self.done["postgres stop+start"] += 1
            self._note("postgres up")
            log.info("restarted postgres")

    async def drop_connections(self, times: int, seconds: float, stop: asyncio.Event) -> None:
        """CLIENT KILL TYPE normal: every client connection (workers' and the drill's own) is cut."""
        for at in _moments(self.rng, times, seconds):
            if await _wait_until(stop, self.started + at):
                return
            client = aioredis.Redis.from_url(self.server.url)
            try:
                killed = await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            except (OSError, aioredis.RedisError) as exc:  # Redis restarting at that moment
                log.warning("could not drop connections: %s", exc)
                continue
            finally:
                await client.aclose()
            self.done["connections dropped"] += 1
            self._note(f"{killed} connections cut")
            self.done["connections cut"] += int(killed)
            log.info("dropped %s client connections", killed)


def _moments(rng: random.Random, times: int, seconds: float) -> list[float]:
    """One random moment in each of `times` equal slices of the run (seconds from its start)."""
    width = seconds / max(times, 1)
    return [width * (i + rng.uniform(0.2, 0.8)) for i in range(times)]


async def _wait_until(stop: asyncio.Event, when: float) -> bool:
    """Sleep until the event loop's time `when`; True if `stop` was set meanwhile."""
    return await stopped(stop, max(0.0, when - asyncio.get_running_loop().time()))
