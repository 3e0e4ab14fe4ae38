"""The router's phases: throughput through K routing workers, then latency at a fixed offered load."""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ops.bench._load import make_contacts, paced, produce
from ops.bench._measure import CpuMeter, command_delta, command_stats, percentile, slowlog_breakdown, slowlog_start
from ops.bench._processes import start_workers, stop_workers
from ops.bench._streams import group_state, last_id, scan_events, wait_blocked, wait_consumed
from router import atomic, bus, events, scripts
from router.app import processes
from router.config import Deployment
from router.keys import ROUTING_GROUP, Keys
from router.settings import Settings
from router.store import Store, connect


async def make_available(store: Store, deployment: Deployment) -> None:
    for tenant in deployment.tenants:
        calls = [atomic.presence_call(store, tenant.id, agent.id, presence="available") for agent in tenant.agents]
        for result in await scripts.run_pipelined(store.redis, calls):
            if isinstance(result, Exception):
                raise result


async def router_run(
    url: str,
    opts: argparse.Namespace,
    workers: int,
    deployment: Deployment,
    config: Path,
    logdir: Path,
    ceiling: Callable[[], Awaitable[dict]],
) -> dict:
    tenants = [t.id for t in deployment.tenants]
    inbound = [Keys(t).inbound for t in tenants]
    event_streams = [Keys(t).events for t in tenants]
    store = connect(Settings(redis_url=url))
    r = store.redis
    procs: list[subprocess.Popen] = []
    try:
        await r.flushall()
        await processes.prepare(store, deployment)
        await make_available(store, deployment)
        procs, label = start_workers(url, config, workers, opts.batch, logdir, opts.profile)
        await wait_blocked(r, workers, procs)

        async def add(contact: events.InboundContact) -> tuple[bool, str]:
            return await bus.ingest(store, contact)

        # Warm up: script cache, connections, first-call paths in the workers.
        await produce(make_contacts(tenants, "warm", opts.warmup), add, opts.producers)
        await wait_consumed(r, inbound, ROUTING_GROUP, procs, 60)

        # Throughput, in rounds: each round measures the raw ceiling, then N contacts
        # through the router as fast as the producers can ingest them; one more ceiling
        # closes the last round. A round's ratio sets its router run against the
        # ceilings just before and after it, so a machine that is slower for a while
        # (a shared one) lowers both sides of that round alike.
        raws = [await ceiling()]
        rounds = []
        for n in range(opts.rounds):
            rounds.append(await _throughput(store, opts, workers, procs, label, tenants, f"load{n}"))
            raws.append(await ceiling())
        for n, t in enumerate(rounds):
            t["ceiling_per_second"] = round((raws[n]["per_second"] + raws[n + 1]["per_second"]) / 2, 1)
            t["ratio"] = round(t["per_second"] / t["ceiling_per_second"], 3)
        throughput = dict(sorted(rounds, key=lambda t: t["ratio"])[len(rounds) // 2])  # the median round
        throughput["rounds"] = [{k: t[k] for k in ("per_second", "ceiling_per_second", "ratio")} for t in rounds]

        # Latency at a fixed offered load.
        marks = {s: await last_id(r, s) for s in event_streams}
        offered, sent_s, ingest_ms = await paced(store, tenants, opts.rate, opts.duration)
        await wait_consumed(r, inbound, ROUTING_GROUP, procs, 120)
        conv_of: dict[str, str] = {}
        reserved_at: dict[str, int] = {}
        for s in event_streams:
            for ms, ev in await scan_events(r, s, marks[s]):
                if ev.type == "message" and ev.message in ingest_ms:
                    conv_of[ev.message] = ev.conversation
                elif ev.type == "reserved":
                    reserved_at.setdefault(ev.conversation, ms)
        latencies = sorted(reserved_at[conv_of[c]] - at for c, at in ingest_ms.items() if conv_of.get(c) in reserved_at)
        latency = {
            "rate": opts.rate,
            "duration_s": opts.duration,
            "contacts": offered,
            "offered_per_second": round(offered / sent_s, 1),
            "reserved": len(latencies),
            "p50_ms": percentile(latencies, 50),
            "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1] if latencies else float("nan"),
        }
        return {"throughput": throughput, "latency": latency, "raw_runs": raws}
    finally:
        stop_workers(procs)
        await store.close()


async def _throughput(
    store: Store, opts: argparse.Namespace, workers: int, procs: list, label: str, tenants: list[str], tag: str
) -> dict:
    """N fresh contacts through ingest and the routing workers, as fast as the producers go."""
    r = store.redis
    inbound = [Keys(t).inbound for t in tenants]
    event_streams = [Keys(t).events for t in tenants]

    async def add(contact: events.InboundContact) -> tuple[bool, str]:
        return await bus.ingest(store, contact)

    marks = {s: await last_id(r, s) for s in event_streams}
    contacts = make_contacts(tenants, tag, opts.contacts)
    if opts.breakdown:
        await slowlog_start(r)
    stats0 = await command_stats(r)
    meter = CpuMeter(r, [p.pid for p in procs])
    await meter.start()
    started_ms = time.time() * 1000
    produce_s = await produce(contacts, add, opts.producers)
    backlog = sum([(await group_state(r, s, ROUTING_GROUP))[0] for s in inbound])
    await wait_consumed(r, inbound, ROUTING_GROUP, procs, 300)
    cpu = await meter.stop()
    stats = command_delta(stats0, await command_stats(r))
    breakdown = await slowlog_breakdown(r, opts.contacts) if opts.breakdown else None
    reserved_ms = [ms for s in event_streams for ms, ev in await scan_events(r, s, marks[s]) if ev.type == "reserved"]
    waiting = sum([await r.zcard(Keys(t).waiting("chat")) for t in tenants])
    seconds = (max(reserved_ms) - started_ms) / 1000 if reserved_ms else float("nan")
    throughput = {
        "workers": workers,
        "launcher": label,
        "contacts": opts.contacts,
        "reserved": len(reserved_ms),
        "left_waiting": waiting,
        "seconds": round(seconds, 3),
        "per_second": round(len(reserved_ms) / seconds, 1),
        "ingested_per_second": round(opts.contacts / produce_s, 1),
        "backlog_when_ingested": backlog,
        "cpu_percent": cpu,
        **_round_trips(stats, opts.contacts),
    }
    if breakdown is not None:
        throughput["redis_time_breakdown"] = breakdown
    return throughput


def _round_trips(stats: dict[str, tuple[int, int]], contacts: int) -> dict:
    """What Redis saw during the throughput phase (producers' ingest scripts included)."""
    evalsha = stats.get("evalsha", (0, 0))[0] + stats.get("eval", (0, 0))[0]
    reads = stats.get("xreadgroup", (0, 0))[0]
    acks = stats.get("xack", (0, 0))[0]
    batches = acks or 1  # a batch's XACK rides with the next read, one per batch
    exists = stats.get("script|exists", (0, 0))[0]  # a pipeline handed Script objects asks this first
    # per batch: XREADGROUP (with the last batch's XACK), then one pipeline of scripts
    # (intake per shard, assign_queue per queue touched); ingest is one script per contact
    worker_round_trips = reads + exists + batches
    script_usec = stats.get("evalsha", (0, 0))[1] + stats.get("eval", (0, 0))[1]
    return {
        "batches": acks,
        "avg_batch": round(contacts / batches, 1),
        "worker_scripts_per_batch": round(max(evalsha - contacts, 0) / batches, 2),
        "worker_round_trips_per_batch": round(worker_round_trips / batches, 2),
        "worker_round_trips_per_contact": round(worker_round_trips / contacts, 3),
        "redis_script_usec_per_contact": round(script_usec / contacts, 1),
        "redis_usec_by_command": {k: {"calls": v[0], "usec": v[1]} for k, v in sorted(stats.items())},
    }
