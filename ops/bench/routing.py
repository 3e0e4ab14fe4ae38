"""Routing benchmark: the router against the raw Redis stream ceiling, measured in one run.

    python -m ops.bench routing [--contacts N] [--rate R] [--workers 1,2,4] [--json]

It starts its own redis-server (ops.redis_server.RedisServer) and measures:

1. The raw ceiling. ``--producers`` concurrent tasks in this process (one
   connection each) XADD one encoded InboundContact (router.events.encode) per
   call, as concurrent webhooks do (32 by default: with fewer, on 2 cores, the
   raw run waits for replies and measures less than the stream can take), while one consumer *process* reads XREADGROUP
   COUNT=batch BLOCK and XACKs each batch: the router's read pattern without the
   routing work, on the same client (router.store.connect: redis.asyncio with
   hiredis). Ceiling = N / (first XADD .. last XACK).
2. The router. The same producers call router.bus.ingest (the de-duplicating
   ingest script) for N fresh contacts while K routing workers
   (``contactrouter run routing`` subprocesses) route them. Agents have room
   for every contact, so nobody waits for capacity. Throughput = `reserved`
   events / (first ingest .. last `reserved` event id), read from the events stream.
   It runs ``--rounds`` times, each run between two ceiling runs, and a round's
   ratio is its throughput over the mean of the ceilings on either side: a shared
   machine that slows down for a few seconds slows both sides of that round. The
   ratio reported is the median round's.
3. Latency. An open-loop producer offers ``--rate`` contacts/s for
   ``--duration`` seconds; latency = the `reserved` event's stream id ms minus
   the inbound entry's stream id ms (both stamped by the Redis clock, 1 ms resolution).

CPU use of every party is reported per phase, and `others` shows how much the
rest of the machine took: on a shared machine that is the first thing to check.
This is a measurement, not a test: nothing asserts on timing.

The parts: _raw.py (1), _router.py (2 and 3), _load.py (deployment, contacts,
producers), _measure.py (CPU, command stats, slow log, percentiles),
_streams.py (group state, waits, event scans), _processes.py (the subprocesses),
_report.py (the text report). This module runs them in order and holds the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from ops.bench._args import positive
from ops.bench._load import deployment_toml
from ops.bench._processes import code_version
from ops.bench._raw import raw_ceiling
from ops.bench._report import render
from ops.bench._router import router_run
from ops.redis_server import RedisServer
from router.config import load_deployment


async def run(opts: argparse.Namespace) -> dict:
    tenants = [f"bench{i}" for i in range(opts.tenants)]
    per_tenant = math.ceil((opts.warmup + opts.contacts * opts.rounds + opts.rate * opts.duration) / opts.tenants)
    capacity = max(50, math.ceil(per_tenant * 1.2 / opts.agents))
    logdir = Path(tempfile.mkdtemp(prefix="cr-bench-"))
    config = logdir / "bench.toml"
    config.write_text(deployment_toml(tenants, opts.agents, capacity))
    deployment = load_deployment(config)
    try:
        with RedisServer() as server:
            r = aioredis.Redis.from_url(server.url)
            version = (await r.info("server"))["redis_version"]
            await r.aclose()
            report: dict[str, Any] = {
                "setup": {
                    "redis": f"redis-server {version} on 127.0.0.1:{server.port} (no AOF, no RDB)",
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "code": code_version("router", "workers"),
                    "tenants": opts.tenants,
                    "agents_per_tenant": opts.agents,
                    "webchat_capacity": capacity,
                    "batch": opts.batch,
                    "producers": opts.producers,
                    "warmup": opts.warmup,
                    "rounds": opts.rounds,
                },
                "router": [],
            }

            async def ceiling() -> dict:
                return await raw_ceiling(server.url, opts, tenants)

            for workers in opts.workers:
                report["router"].append(
                    await router_run(server.url, opts, workers, deployment, config, logdir, ceiling)
                )
            return report
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def _workers(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a worker count or a list such as 1,2,4") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return counts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.bench routing", description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=20_000, help="contacts in each throughput phase (20000)")
    p.add_argument(
        "--rounds", type=positive, default=3, help="throughput rounds per worker count, each between two ceilings (3)"
    )
    p.add_argument("--rate", type=float, default=500, help="offered contacts/s in the latency phase (500)")
    p.add_argument("--duration", type=float, default=10, help="seconds of the latency phase (10)")
    p.add_argument("--workers", type=_workers, default=[1], help="routing workers, or a list to run each: 1,2,4 (1)")
    p.add_argument("--tenants", type=int, default=1, help="tenants (shards) the contacts spread over (1)")
    p.add_argument("--agents", type=int, default=200, help="agents per tenant (200)")
    p.add_argument(
        "--producers",
        type=int,
        default=32,
        help="concurrent producer tasks (32: on 2 cores, the fewest at which the raw ceiling is bound by the"
        " producers' own CPU rather than by waiting for replies)",
    )
    p.add_argument("--batch", type=int, default=100, help="XREADGROUP COUNT, for the router and the ceiling (100)")
    p.add_argument("--warmup", type=int, default=200, help="contacts routed before each measurement (200)")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="Redis time per command and script in the throughput phase (SLOWLOG; adds a little load)",
    )
    p.add_argument(
        "--profile", metavar="FILE", help="run the first routing worker under cProfile, stats to FILE (last run)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    report = asyncio.run(run(opts))
    print(json.dumps(report, indent=2) if opts.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
