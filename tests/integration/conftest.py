"""Integration fixtures: worker processes as operations run them, and the event log.

Workers are started the way the Procfile starts them, `contactrouter run <role>`,
configured by the environment only (the process applies the deployment's tenants
at start-up).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from router import events
from router.config import Deployment
from router.keys import ROUTING_GROUP, Keys
from router.store import Store

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "contactrouter"  # the console script of this venv


def worker_command(role: str) -> list[str]:
    return [str(CLI), "run", role]


class Workers:
    """Worker processes of one test; all are stopped when the test ends."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, role: str, consumer: str, config: Path, **env: str | int) -> subprocess.Popen:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTROUTER_")}
        environ.update(
            # Named connections let the test see, in CLIENT LIST, what each worker is doing.
            REDIS_URL=f"{self.redis_url}?client_name={consumer}",
            CONTACTROUTER_CONFIG=str(config),
            CONTACTROUTER_CONSUMER=consumer,
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
        )
        environ.update({f"CONTACTROUTER_{k.upper()}": str(v) for k, v in env.items()})
        log = (self.log_dir / f"{consumer}.log").open("wb")
        process = subprocess.Popen(worker_command(role), cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes[consumer] = process
        return process

    def freeze(self, consumer: str) -> None:
        """SIGSTOP: the worker stops wherever it is, so the test can look at what it holds."""
        self.processes[consumer].send_signal(signal.SIGSTOP)

    def thaw(self, consumer: str) -> None:
        self.processes[consumer].send_signal(signal.SIGCONT)

    def kill(self, consumer: str) -> None:
        """SIGKILL, as a crash (or the OOM killer) would: no cleanup, no acknowledgements."""
        process = self.processes[consumer]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def log(self, consumer: str) -> str:
        return (self.log_dir / f"{consumer}.log").read_text("utf-8", errors="replace")

    def check_alive(self) -> None:
        """Fail at once, with its output, when a worker died that the test did not kill."""
        for consumer, process in self.processes.items():
            code = process.poll()
            if code is not None and code != -signal.SIGKILL:
                pytest.fail(f"worker {consumer} exited with {code}:\n{self.log(consumer)[-4000:]}")

    def errors(self) -> dict[str, list[str]]:
        """Error lines and tracebacks the workers logged, by worker."""
        found = {}
        for consumer in self.processes:
            lines = [line for line in self.log(consumer).splitlines() if " ERROR " in line or "Traceback" in line]
            if lines:
                found[consumer] = lines[:10]
        return found

    async def reading(self, store: Store, names: set[str], command: str = "xreadgroup") -> bool:
        """Whether every named worker is past start-up: its connection's last command is `command`
        (a routing worker's blocking read of the streams; the timers worker's EVALSHA)."""
        self.check_alive()
        busy = {c["name"] for c in await store.redis.client_list() if c.get("cmd") == command}
        return names <= busy

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a frozen worker could not act on SIGTERM
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(redis_url, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str, *, deadline_s: float = 60, every_s: float = 0.05
) -> None:
    """Poll until condition() holds; fail naming what never happened."""
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting after {deadline_s:.0f} s: {what}")
        await asyncio.sleep(every_s)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def pending(store: Store, deployment: Deployment) -> int:
    """Routing-group entries read but not acknowledged, over every tenant's inbound stream."""
    total = 0
    for tenant in deployment.tenants:
        summary = await store.redis.xpending(Keys(tenant.id).inbound, ROUTING_GROUP)
        total += int(summary["pending"])
    return total


class GroupProbe:
    pending = staticmethod(pending)

    async def pending_of(self, store: Store, deployment: Deployment, consumer: str) -> int:
        """Entries the named consumer holds unacknowledged, over every inbound stream."""
        total = 0
        for tenant in deployment.tenants:
            rows = await store.redis.xinfo_consumers(Keys(tenant.id).inbound, ROUTING_GROUP)
            total += sum(int(row["pending"]) for row in rows if _text(row["name"]) == consumer)
        return total


class EventLog:
    """Reads the tenants' events streams incrementally, in stream order per tenant."""

    def __init__(self, store: Store, tenants: list[str]) -> None:
        self.store = store
        self.streams = {Keys(t).events: "0-0" for t in tenants}
        self.events: list[events.StateEvent] = []

    async def poll(self, block_ms: int = 50) -> list[events.StateEvent]:
        reply = await self.store.redis.xread(self.streams, count=5000, block=block_ms)
        fresh = []
        for stream, items in reply or []:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in items:
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self.streams[stream] = entry_id
                fresh.append(events.decode_state(fields[b"e"], entry_id))
        self.events.extend(fresh)
        return fresh

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def event_log(real_store: Store) -> Callable[[list[str]], EventLog]:
    """A reader of the given tenants' events streams, from their start."""
    return lambda tenants: EventLog(real_store, tenants)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Awaitable[None]]:
    """`await eventually(condition, what)`: poll an async condition, fail naming `what` on the deadline."""
    return eventually


@pytest.fixture(name="group")
def group_fixture() -> GroupProbe:
    """Questions about the routing consumer group: what is still pending, and with whom."""
    return GroupProbe()
