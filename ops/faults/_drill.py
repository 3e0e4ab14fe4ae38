"""One fault drill: a Redis with AOF, the workers of a deployment, customers and
agents at work, faults injected while they work, then the audit once it is quiet."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ops.faults import _archive as archive_audit
from ops.faults._agents import Agents
from ops.faults._audit import Tally, audit, outstanding
from ops.faults._customers import Customers
from ops.faults._injector import Injector, RedisCrash
from ops.faults._supervisor import Supervisor
from ops.postgres_server import PostgresServer
from ops.redis_server import RedisServer
from router import agents as desk_actions
from router.app import processes
from router.config import Deployment, load_deployment
from router.settings import Settings
from router.store import Store, connect

log = logging.getLogger(__name__)

T = TypeVar("T")

ROLES = ("routing", "dispatch", "timers", "archive")
RESTART_AFTER_S = 0.3  # a dead worker is started again this long after its exit is seen, as a process manager would

DEPLOYMENT = """
[[tenants]]
id = "{tenant}"
reservation_timeout = 30
wrapup_seconds = 0
entry = {{ default = "desk" }}

[[tenants.queues]]
id = "desk"
"""

AGENT = """
[[tenants.agents]]
id = "{agent}"
capacity = {{ sms = 4, total = 4 }}
"""


def deployment_toml(tenants: list[str], agents: int) -> str:
    """Tenants with one SMS queue each and `agents` agents with room for four conversations."""
    parts = []
    for tenant in tenants:
        parts.append(DEPLOYMENT.format(tenant=tenant))
        parts += [AGENT.format(agent=f"{tenant}-{i:02d}") for i in range(agents)]
    return "".join(parts)


@dataclass(frozen=True)
class DrillOptions:
    seconds: float = 60.0  # of steady load, with faults
    rate: float = 50.0  # contacts per second offered
    fsync: Literal["everysec", "always"] = "everysec"
    kill: tuple[str, ...] = ()  # roles whose workers are SIGKILLed at random moments
    kill_every_s: float = 3.0  # mean time between two kills
    restart_redis: int = 0  # times redis-server is restarted during the load
    redis_crash: RedisCrash = "kill"  # how: SIGKILL (a crash) or SHUTDOWN (graceful, fsyncs the AOF)
    redis_down_s: float = 0.5  # how long Redis stays down each time
    drop_connections: int = 0  # times every client connection is cut (CLIENT KILL TYPE normal)
    # an archive worker into a PostgreSQL of the drill's own (implied by killing the archive role
    # or restarting PostgreSQL), audited against Redis at the end
    archive: bool = False
    restart_postgres: int = 0  # times PostgreSQL is stopped and started during the load
    postgres_down_s: float = 1.0  # how long it stays down each time
    routing: int = 2  # routing workers (dispatch and timers: one each, as the README advises)
    tenants: int = 2
    agents: int = 6  # per tenant
    claim_idle_ms: int = 1500  # a dead worker's entries are taken over after this
    # A send cut short by a crash is reconciled after this. It must outlast the slowest
    # send, and a send through a restarting Redis takes up to the client's retry budget
    # (router.store: about 9 s); shorter, and a send still retrying is taken for dead.
    send_lease_ms: int = 15_000
    settle_s: float = 60.0  # how long to wait for quiet after the load
    seed: int | None = None
    logdir: Path | None = None  # keep the workers' logs here (default: a temporary folder, removed)


@dataclass
class DrillReport:
    options: DrillOptions
    tally: Tally
    faults: dict[str, int]
    timeline: list[str]  # when each fault was injected
    quiet: bool  # the pipeline went quiet before the audit (else `left` says what was still going on)
    left: dict[str, int]
    unexpected_exits: list[str]  # worker exits the drill did not cause, with their logs' tails
    worker_errors: dict[str, int]  # ERROR lines each worker logged (Redis outages cause some)
    agent_errors: dict[str, int]  # failed agent actions, by exception, each tried again
    ingest_retries: int
    seed: int
    seconds: float = 0.0
    logdir: str = ""
    archive: dict[str, int] | None = None  # the archive's audit (ops/faults/_archive.py), when one ran

    @property
    def ok(self) -> bool:
        return self.quiet and self.tally.ok and not self.unexpected_exits and archive_audit.whole(self.archive)


async def run_drill(options: DrillOptions) -> DrillReport:
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    logdir = options.logdir or Path(tempfile.mkdtemp(prefix="cr-faults-"))
    logdir.mkdir(parents=True, exist_ok=True)
    tenants = [f"t{i}" for i in range(options.tenants)]
    config = logdir / "drill.toml"
    config.write_text(deployment_toml(tenants, options.agents), "utf-8")
    deployment = load_deployment(config)
    started = time.monotonic()
    server = RedisServer(appendonly=True, appendfsync=options.fsync)
    archived = options.archive or "archive" in options.kill or options.restart_postgres > 0
    postgres = PostgresServer() if archived else None
    env = {
        "CONTACTROUTER_CLAIM_IDLE_MS": str(options.claim_idle_ms),
        "CONTACTROUTER_SEND_LEASE_MS": str(options.send_lease_ms),
        "LOG_LEVEL": "INFO",
    }
    database_url = ""
    if postgres is not None:
        postgres.start()
        database_url = await asyncio.to_thread(_archive_database, postgres)
        env["DATABASE_URL"] = database_url
    supervisor = Supervisor(server.url, config, logdir, env)
    store = connect(Settings(redis_url=server.url))
    try:
        with server:
            try:
                await processes.prepare(store, deployment)
                # One generator each, so the faults' moments and victims replay from the seed
                # whatever the timing of the customers and agents.
                injector = Injector(server, supervisor, random.Random(seed), postgres=postgres)
                customers = Customers(store, tenants, random.Random(seed + 1), tag=f"drill{seed}")
                agents = Agents(store, deployment, random.Random(seed + 2))
                supervisor.add("routing", options.routing)
                supervisor.add("dispatch", 1)
                supervisor.add("timers", 1)
                if archived:
                    supervisor.add("archive", 1)
                await _until_connected(server.url, supervisor)
                for tenant in deployment.tenants:
                    for agent in tenant.agents:
                        await _retrying(
                            lambda t=tenant, a=agent.id: desk_actions.set_presence(store, t, a, "available")
                        )

                working, watching, faulting = asyncio.Event(), asyncio.Event(), asyncio.Event()
                watcher = asyncio.create_task(_restart_the_dead(supervisor, watching))
                desk = asyncio.create_task(agents.run(working))
                injector.started = asyncio.get_running_loop().time()
                faults = [
                    injector.kill_workers(tuple(options.kill), options.kill_every_s, faulting),
                    injector.restart_redis(
                        options.restart_redis, options.seconds, options.redis_crash, options.redis_down_s, faulting
                    ),
                    injector.drop_connections(options.drop_connections, options.seconds, faulting),
                    injector.restart_postgres(
                        options.restart_postgres, options.seconds, options.postgres_down_s, faulting
                    ),
                ]
                fault_tasks = [asyncio.create_task(f) for f in faults]
                await customers.run(options.rate, options.seconds)
                faulting.set()
                await asyncio.gather(*fault_tasks)

                quiet, left = await _settle(store, deployment, agents, supervisor, options.settle_s, archived)
                working.set()
                await desk
                tally = await _retrying(
                    lambda: audit(
                        store, deployment, len(customers.offered), customers.accepted, set(agents.replies.values())
                    )
                )
                archive_result = None
                if archived:
                    archive_result = await _retrying(lambda: archive_audit.audit(store, deployment, database_url))
                watching.set()
                await watcher
                report = DrillReport(
                    options=options,
                    tally=tally,
                    faults=dict(injector.done),
                    timeline=injector.timeline,
                    quiet=quiet,
                    left=left,
                    unexpected_exits=supervisor.unexpected_exits(),
                    worker_errors={name: len(lines) for name, lines in supervisor.error_lines().items()},
                    agent_errors=dict(agents.errors),
                    ingest_retries=customers.retried,
                    seed=seed,
                    logdir=str(logdir),
                    archive=archive_result,
                )
            finally:
                supervisor.stop_all()  # the workers go before their Redis does
    finally:
        await store.close()
        if postgres is not None:
            postgres.stop()
    report.seconds = round(time.monotonic() - started, 1)
    if options.logdir is None and report.ok:
        shutil.rmtree(logdir, ignore_errors=True)
        report.logdir = ""
    return report


async def _retrying(action: Callable[[], Awaitable[T]], within_s: float = 30.0) -> T:
    """Run an action of the drill itself, through a Redis that may be restarting."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await action()
        except (RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _until_connected(url: str, supervisor: Supervisor, within_s: float = 60.0) -> None:
    """Until every worker has connected (its named connection shows in CLIENT LIST)."""
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + within_s
    try:
        while True:
            names = {row["name"] for row in await client.client_list()}
            if set(supervisor.consumers()) <= names:
                return
            if supervisor.down():
                raise RuntimeError("a worker exited at start-up:\n" + "\n".join(supervisor.unexpected_exits()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not connect within {within_s:.0f} s: see {supervisor.logdir}")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def _restart_the_dead(supervisor: Supervisor, stop: asyncio.Event) -> None:
    """A process manager's job: start again every worker that died (killed or crashed)."""
    seen_down: dict[str, float] = {}
    while not stop.is_set():
        now = time.monotonic()
        for name in supervisor.down():
            if now - seen_down.setdefault(name, now) >= RESTART_AFTER_S:
                supervisor.restart(name)
                seen_down.pop(name)
        await asyncio.sleep(0.05)


def _archive_database(postgres: PostgresServer) -> str:
    """A database for the drill's archive on its own PostgreSQL, with the schema applied."""
    import psycopg

    from router.records import migrate

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE archive")
    url = postgres.url.rsplit("/", 1)[0] + "/archive"
    migrate.upgrade(url)
    return url


async def _settle(
    store: Store, deployment: Deployment, agents: Agents, supervisor: Supervisor, within_s: float, archived: bool
) -> tuple[bool, dict[str, int]]:
    """Wait until nothing is left to do: streams read and acknowledged, no delivery
    scheduled or in flight, nobody waiting, no agent holding work; twice in a row."""
    deadline = time.monotonic() + within_s
    calm = 0
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            left = await outstanding(store, deployment)
            if archived and (behind := await archive_audit.behind(store, deployment)):
                left["events the archive has not acknowledged"] = behind
            if not left and not supervisor.down() and await agents.idle():
                calm += 1
                if calm >= 2:
                    return True, {}
            else:
                calm = 0
        except (RedisError, OSError):
            calm = 0
        await asyncio.sleep(0.5)
    if not left and not await agents.idle():
        left = {"agents holding work": 1}
    return False, left
