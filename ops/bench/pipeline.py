"""Pipeline benchmark: inbound -> routed -> agent reply -> dispatched, against the raw stream ceiling.

    python -m ops.bench pipeline [--contacts N] [--workers 1,2,4] [--topologies single,cluster] [--json]

It measures, in one run:

1. The raw ceiling on a single redis-server (ops.bench._raw: XADD / XREADGROUP /
   XACK of the same encoded contacts, no routing work), before and after the
   pipeline rows; the better run counts.
2. The whole pipeline, for each topology (one redis-server; a 3-primary Redis
   Cluster with one tenant on each primary) and each count of routing workers:
   producers in this process call router.bus.ingest for N fresh web chat contacts
   over three tenants; K routing workers (`contactrouter run routing`) route them;
   agent desks (this module run as `python -m ops.bench.pipeline desk ...`, one
   process each) read the `reserved` events and accept, reply and close through
   router.agents as the inbox does; one `contactrouter run dispatch` sends the
   replies (to the sandbox outbox). End to end = N / (first ingest .. last
   `delivery` event of status sent).

Everything shares this machine's CPUs, so the rows show where the pipeline's
cost goes as much as what Redis allows: the cpu columns say what each kind of
process used, and `machine` how busy the whole machine was (200 % is two CPUs).
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.crc import key_slot

from ops.bench._load import deployment_toml, make_contacts, produce
from ops.bench._measure import machine_cpu, proc_cpu, self_cpu
from ops.bench._processes import ROOT, check_alive, child_env, stop_workers
from ops.bench._raw import raw_ceiling
from ops.bench._streams import as_text, entry_ms, last_id
from ops.redis_cluster import RedisClusterNodes
from ops.redis_server import RedisServer
from router import agents, bus, events
from router.app import processes
from router.config import Deployment, load_deployment
from router.keys import Keys
from router.settings import Settings
from router.store import connect

log = logging.getLogger(__name__)

CLUSTER_SLOTS = 16384
DESK_CONCURRENCY = 64  # conversations one desk process works on at once


def spread_tenants(shards: int) -> list[str]:
    """Tenant ids whose hash tags fall in different thirds of the slot space: on a
    cluster made by `redis-cli --cluster create`, one tenant on each primary."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < shards:
        tenant = f"bench{n}"
        found.setdefault(key_slot(Keys(tenant).base.encode()) * shards // CLUSTER_SLOTS, tenant)
        n += 1
    return [found[i] for i in range(shards)]


class _Progress(msgspec.Struct):
    """The fields of an event this benchmark counts."""

    type: str = ""
    status: str = ""
    reservation: str = ""
    agent: str = ""
    conversation: str = ""


_decode = msgspec.msgpack.Decoder(_Progress).decode


class Stages:
    """Reads the events streams from marks on: when each stage last advanced, and how far."""

    def __init__(self, r: Any, marks: dict[str, str]) -> None:
        self.r = r
        self.marks = dict(marks)
        self.counts = {"reserved": 0, "accepted": 0, "sent": 0}
        self.last_ms = {"reserved": 0, "accepted": 0, "sent": 0}

    async def poll(self) -> None:
        for stream, mark in self.marks.items():
            rows = await self.r.xrange(stream, min=f"({mark}", max="+", count=10_000)
            for entry_id, fields in rows:
                event = _decode(fields[b"e"])
                stage = "sent" if event.type == "delivery" and event.status == "sent" else event.type
                if stage in self.counts:
                    self.counts[stage] += 1
                    self.last_ms[stage] = max(self.last_ms[stage], entry_ms(entry_id))
            if rows:
                self.marks[stream] = as_text(rows[-1][0])

    async def until_sent(self, n: int, procs: list[subprocess.Popen], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while self.counts["sent"] < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.counts} of {n} contacts through the pipeline in {within_s:.0f} s")
            check_alive(procs)
            await asyncio.sleep(0.05)
            await self.poll()


def _start(role: list[str], name: str, url: str, cluster: bool, config: Path, logdir: Path) -> subprocess.Popen:
    env = {
        "REDIS_URL": url,
        "REDIS_CLUSTER": "true" if cluster else "false",
        "CONTACTROUTER_CONFIG": str(config),
        "CONTACTROUTER_CONSUMER": name,
        "LOG_LEVEL": "WARNING",
    }
    log_path = logdir / f"{name}.log"
    with open(log_path, "wb") as handle:
        proc = subprocess.Popen(role, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(env))
    proc.bench_log = str(log_path)  # type: ignore[attr-defined]  # check_alive prints its tail
    return proc


def _groups(procs: list[subprocess.Popen]) -> dict[str, list[int]]:
    """The pipeline's processes by kind (routing, dispatch, desks), from their log names."""
    groups: dict[str, list[int]] = {}
    for proc in procs:
        kind = Path(proc.bench_log).stem.split("-")[0]  # type: ignore[attr-defined]
        groups.setdefault(kind, []).append(proc.pid)
    return groups


def start_pipeline(
    url: str, cluster: bool, config: Path, logdir: Path, workers: int, desks: int
) -> list[subprocess.Popen]:
    """K routing workers and one dispatch worker as the Procfile runs them, and the agent desks."""
    cli = str(Path(sys.executable).with_name("contactrouter"))
    procs = [_start([cli, "run", "routing"], f"routing-{i}", url, cluster, config, logdir) for i in range(workers)]
    procs.append(_start([cli, "run", "dispatch"], "dispatch-0", url, cluster, config, logdir))
    desk = [sys.executable, "-m", "ops.bench.pipeline", "desk"]
    procs += [_start([*desk, str(i), str(desks)], f"desk-{i}", url, cluster, config, logdir) for i in range(desks)]
    return procs


async def pipeline_run(
    url: str,
    cluster: bool,
    redis_pids: list[int],
    workers: int,
    deployment: Deployment,
    config: Path,
    logdir: Path,
    opts: argparse.Namespace,
) -> dict:
    tenants = [t.id for t in deployment.tenants]
    store = connect(Settings(redis_url=url, cluster=cluster))
    r = store.redis
    procs: list[subprocess.Popen] = []
    try:
        await r.flushall()
        await processes.prepare(store, deployment)
        for tenant in deployment.tenants:
            for agent in tenant.agents:
                await agents.set_presence(store, tenant, agent.id, "available")
        procs = start_pipeline(url, cluster, config, logdir, workers, opts.desks)

        async def add(contact: events.InboundContact) -> tuple[bool, str]:
            return await bus.ingest(store, contact)

        # Warm-up through the whole pipeline: every process is up and past its first calls.
        streams = [Keys(t).events for t in tenants]
        warm = Stages(r, {s: "0-0" for s in streams})
        await produce(make_contacts(tenants, "warm", opts.warmup), add, opts.producers)
        await warm.until_sent(opts.warmup, procs, 120)

        stages = Stages(r, {s: await last_id(r, s) for s in streams})
        groups = {"redis": redis_pids, **_groups(procs)}
        cpu0 = {name: sum(proc_cpu(pid) for pid in pids) for name, pids in groups.items()}
        me0, machine0, wall0 = self_cpu(), machine_cpu(), time.time()
        started_ms = time.time() * 1000
        produce_s = await produce(make_contacts(tenants, "load", opts.contacts), add, opts.producers)
        await stages.until_sent(opts.contacts, procs, 600)
        wall = time.time() - wall0
        cpu = {
            name: round(100 * (sum(proc_cpu(pid) for pid in pids) - cpu0[name]) / wall) for name, pids in groups.items()
        }
        cpu["producers"] = round(100 * (self_cpu() - me0) / wall)
        cpu["machine"] = round(100 * (machine_cpu() - machine0) / wall)

        def rate(stage: str) -> float:
            return round(stages.counts[stage] / ((stages.last_ms[stage] - started_ms) / 1000), 1)

        return {
            "topology": "3-primary cluster" if cluster else "single redis-server",
            "workers": workers,
            "contacts": opts.contacts,
            "seconds": round((stages.last_ms["sent"] - started_ms) / 1000, 3),
            "per_second": rate("sent"),
            "ingested_per_second": round(opts.contacts / produce_s, 1),
            "routed_per_second": rate("reserved"),
            "accepted_per_second": rate("accepted"),
            "cpu_percent": cpu,
        }
    finally:
        stop_workers(procs)
        await store.close()


# --- the agent desk process ---------------------------------------------------------------


async def desk(url: str, cluster: bool, config: Path, index: int, count: int) -> None:
    """Accept, reply to and close every conversation offered to this desk's agents
    (those whose id hashes to `index` of `count`), reading the `reserved` events."""
    deployment = load_deployment(config)
    store = connect(Settings(redis_url=url, cluster=cluster))
    gate = asyncio.Semaphore(DESK_CONCURRENCY)
    tasks: set[asyncio.Task] = set()

    async def work(tenant_id: str, event: _Progress) -> None:
        tenant = deployment.tenant(tenant_id)
        async with gate:
            try:
                await agents.accept(store, tenant, event.agent, event.reservation)
                await agents.reply(store, tenant, event.agent, event.conversation, "Thanks, it is on its way.")
                await agents.close(store, tenant, event.agent, event.conversation, "resolved")
            except agents.AgentError as exc:
                log.warning("desk %d: %s", index, exc)

    async def follow(tenant_id: str) -> None:
        stream, mark = Keys(tenant_id).events, "0-0"
        while True:
            reply = await store.redis.xread({stream: mark}, count=1000, block=500)
            for _stream, rows in reply or []:
                for entry_id, fields in rows:
                    mark = as_text(entry_id)
                    event = _decode(fields[b"e"])
                    if event.type == "reserved" and zlib.crc32(event.agent.encode()) % count == index:
                        task = asyncio.create_task(work(tenant_id, event))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)

    try:
        await asyncio.gather(*(follow(t.id) for t in deployment.tenants))
    finally:
        await store.close()


# --- the run and its report -----------------------------------------------------------------


async def run(opts: argparse.Namespace) -> dict:
    tenants = spread_tenants(3)
    per_tenant = math.ceil((opts.warmup + opts.contacts) / len(tenants))
    # room for everyone: no contact waits for capacity, whatever the desks' pace
    capacity = max(50, math.ceil(per_tenant * 1.2 / opts.agents))
    logdir = Path(tempfile.mkdtemp(prefix="cr-bench-pipeline-"))
    config = logdir / "bench.toml"
    config.write_text(deployment_toml(tenants, opts.agents, capacity))
    deployment = load_deployment(config)
    raw_opts = argparse.Namespace(**{**vars(opts), "contacts": opts.raw_contacts})
    try:
        with RedisServer() as server:
            client = aioredis.Redis.from_url(server.url)
            version = (await client.info("server"))["redis_version"]
            await client.aclose()
            report: dict[str, Any] = {
                "setup": {
                    "redis": f"redis-server {version} (no AOF, no RDB)",
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "tenants": tenants,
                    "agents_per_tenant": opts.agents,
                    "desks": opts.desks,
                    "producers": opts.producers,
                    "contacts": opts.contacts,
                },
                "raw_runs": [await raw_ceiling(server.url, raw_opts, tenants)],
                "rows": [],
            }
            pids = [server.process.pid] if server.process else []
            if "single" in opts.topologies:
                for workers in opts.workers:
                    report["rows"].append(
                        await pipeline_run(server.url, False, pids, workers, deployment, config, logdir, opts)
                    )
            if "cluster" in opts.topologies:
                with RedisClusterNodes(primaries=3) as cluster:
                    cluster_pids = [node.process.pid for node in cluster.nodes if node.process]
                    for workers in opts.workers:
                        report["rows"].append(
                            await pipeline_run(
                                cluster.url, True, cluster_pids, workers, deployment, config, logdir, opts
                            )
                        )
            report["raw_runs"].append(await raw_ceiling(server.url, raw_opts, tenants))
        report["raw"] = max(report["raw_runs"], key=lambda run: run["per_second"])
        for row in report["rows"]:
            row["ratio"] = round(row["per_second"] / report["raw"]["per_second"], 3)
        return report
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def render(report: dict) -> str:
    s, raw = report["setup"], report["raw"]
    lines = [
        f"pipeline benchmark: {s['redis']}, {s['cpus']} CPUs, Python {s['python']}",
        f"  tenants {', '.join(s['tenants'])} (one per cluster primary), {s['agents_per_tenant']} agents each;"
        f" {s['producers']} producer tasks; {s['desks']} agent desk processes; 1 dispatch worker",
        "  end to end = contacts / (first ingest .. last reply sent); routed, accepted = .. the last such event",
        "",
        f"{'':<44}{'contacts':>9}{'seconds':>9}{'per s':>8}{'ratio':>7}{'ingest/s':>10}{'routed/s':>10}"
        f"{'accepted/s':>12}   cpu %: {'redis':>5} {'routing':>7} {'dispatch':>8} {'desks':>5}"
        f" {'producers':>9} {'machine':>7}",
    ]
    for i, run in enumerate(report["raw_runs"]):
        name = f"raw ceiling ({'first' if i == 0 else 'last'}): XADD/XREADGROUP/XACK"
        ratio = run["per_second"] / raw["per_second"]
        lines.append(f"{name:<44}{run['contacts']:>9}{run['seconds']:>9.2f}{run['per_second']:>8.0f}{ratio:>7.2f}")
    for row in report["rows"]:
        c = row["cpu_percent"]
        name = f"{row['topology']}, {row['workers']} routing worker{'s' if row['workers'] > 1 else ''}"
        lines.append(
            f"{name:<44}{row['contacts']:>9}{row['seconds']:>9.2f}{row['per_second']:>8.0f}{row['ratio']:>7.2f}"
            f"{row['ingested_per_second']:>10.0f}{row['routed_per_second']:>10.0f}{row['accepted_per_second']:>12.0f}"
            f"          {c['redis']:>5} {c['routing']:>7} {c['dispatch']:>8} {c['desk']:>5} {c['producers']:>9}"
            f" {c['machine']:>7}"
        )
    lines.append(f"  ratio = per s / best raw run ({raw['per_second']:.0f}/s, measured on the single redis-server)")
    lines.append(
        "  cpu % of one CPU during the measured run (redis: every node of the cluster; machine: all processes)"
    )
    return "\n".join(lines)


def _workers(value: str) -> list[int]:
    counts = [int(v) for v in value.split(",") if v.strip()]
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("worker counts such as 1,2,4")
    return counts


def _topologies(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or set(names) - {"single", "cluster"}:
        raise argparse.ArgumentTypeError("single, cluster, or single,cluster")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.bench pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=3000, help="contacts in each measured run (3000)")
    p.add_argument("--workers", type=_workers, default=[1, 2, 4], help="routing workers per run (1,2,4)")
    p.add_argument("--topologies", type=_topologies, default=["single", "cluster"], help="single,cluster")
    p.add_argument("--desks", type=int, default=2, help="agent desk processes (2)")
    p.add_argument("--agents", type=int, default=50, help="agents per tenant (50)")
    p.add_argument("--producers", type=int, default=8, help="concurrent producer tasks (8)")
    p.add_argument("--raw-contacts", type=int, default=20_000, help="contacts in each raw ceiling run (20000)")
    p.add_argument("--batch", type=int, default=100, help="XREADGROUP COUNT of the raw ceiling's consumer (100)")
    p.add_argument("--warmup", type=int, default=200, help="contacts through the pipeline before each run (200)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    report = asyncio.run(run(opts))
    print(json.dumps(report, indent=2) if opts.json else render(report))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["desk"]:  # an agent desk process, started by start_pipeline
        logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
        settings = Settings.from_env()
        asyncio.run(
            desk(settings.redis_url or "", settings.cluster, Path(settings.config_path or ""), *map(int, sys.argv[2:4]))
        )
    else:
        sys.exit(main())
