"""Campaigns benchmark: recipients rendered, checked and queued per second, against the
raw Redis stream ceiling in the same run, and peak memory as the audience grows.

    python -m ops.bench campaigns [--sizes 10000,100000] [--batch 200] [--no-memory] [--json]

It starts its own redis-server and, for each audience size, a child process that
imports a CSV of that many rows (streamed from a file), launches the campaign and
runs one campaigns worker (workers.campaigns.worker.CampaignWorker: claim, send
window, caps, render, suppression and the send script for each recipient) until
every recipient's message is on the outbound stream. Rate = rows / (first claim ..
last message queued). The raw ceiling is the same client XADDing the same encoded
messages in pipelines of the same batch size, with no other work; it is measured
before and after the campaign runs and the better run counts.

Memory: each size also runs in a child under tracemalloc (Python heap peak, import
and send apart) and reports its peak RSS; flat means 100,000 rows cost what 10,000 do.
This is a measurement, not a test: nothing asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import redis.asyncio as aioredis

from ops.bench._processes import ROOT, child_env
from ops.redis_server import RedisServer
from router import events
from router.config import parse_deployment
from router.keys import Keys
from router.settings import Settings
from router.store import connect

TENANT = "bench"
DEPLOYMENT = """
[[tenants]]
id = "bench"
[[tenants.queues]]
id = "offers"
"""
CAMPAIGN = """
id = "bench"
tenant = "bench"
kind = "cross_sell"
channel = "sms"
queue = "offers"
window = { start = "00:00", end = "24:00" }
pacing = { per_minute = 100000000, burst = 1000000 }
[templates.sms.en]
body = "Hi {{ name }}, your account {{ account }} qualifies for {{ offer }} until {{ until }}. Reply YES to switch."
"""
RAW_STREAM = "bench:{raw}:outbound"


def write_csv(path: Path, rows: int) -> None:
    """A realistic audience file: valid US numbers, names, accounts, an offer each."""
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,name,account,offer,until\n")  # no time zone column: the numbers' own zones decide
        for i in range(rows):
            out.write(f"+1212{200 + i // 10000:03d}{i % 10000:04d},Customer {i},AC-{i:07d},20% off,2027-01-31\n")


def sample_message(i: int) -> bytes:
    """What the worker queues, encoded the same way: the raw path's payload."""
    return events.encode(
        events.OutboundMessage(
            id=f"cmp-bench-{i}-1",
            tenant=TENANT,
            channel="sms",
            to=f"+1212{200 + i // 10000:03d}{i % 10000:04d}",
            occurred_at=events.now_ms(),
            conversation=f"cmp-bench-{i}",
            body=f"Hi Customer {i}, your account AC-{i:07d} qualifies for 20% off until 2027-01-31. Reply YES.",
            campaign="bench",
            automatic=True,
            metadata={"campaign_recipient": str(i), "attempt": "1", "kind": "cross_sell"},
        )
    )


async def raw_ceiling(url: str, rows: int, batch: int) -> float:
    """XADDs per second of campaign-sized payloads, pipelined `batch` at a time."""
    r = aioredis.Redis.from_url(url)
    try:
        payloads = [sample_message(i) for i in range(batch)]
        started = time.perf_counter()
        for start in range(0, rows, batch):
            async with r.pipeline(transaction=False) as pipe:
                for payload in payloads[: min(batch, rows - start)]:
                    pipe.xadd(RAW_STREAM, {"e": payload})
                await pipe.execute()
        seconds = time.perf_counter() - started
        return rows / seconds
    finally:
        await r.delete(RAW_STREAM)
        await r.aclose()


async def child(url: str, rows: int, batch: int, trace: bool) -> dict:
    """One audience size: import, launch, send everything; times and memory."""
    from router.campaigns import registry
    from router.campaigns.model import parse_campaign
    from workers.campaigns import audience
    from workers.campaigns.worker import CampaignWorker

    store = connect(Settings(redis_url=url))
    await store.redis.flushall()
    deployment = parse_deployment(DEPLOYMENT, "bench.toml")
    campaign = parse_campaign(CAMPAIGN)
    await registry.create(store, deployment, campaign)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audience.csv"
        write_csv(path, rows)
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8") as source:
            report = await audience.import_csv(store, campaign, source)
        import_s = time.perf_counter() - started
    import_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.reset_peak()
    assert report.imported == rows, report.rejects[:5]
    await registry.change(store, TENANT, campaign.id, "launch", deployment=deployment)
    worker = CampaignWorker(store, deployment, batch=batch)
    redis_cpu = await _redis_cpu(store)
    own_cpu = _own_cpu()
    started = time.perf_counter()
    while await worker.step():
        pass
    send_s = time.perf_counter() - started
    own_cpu = _own_cpu() - own_cpu
    redis_cpu = await _redis_cpu(store) - redis_cpu
    send_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    queued = await store.redis.xlen(Keys(TENANT).outbound)
    left = await store.redis.zcard(Keys(TENANT).campaign_due(campaign.id))
    await store.close()
    return {
        "rows": rows,
        "queued": queued,
        "left": left,
        "import_per_second": round(rows / import_s),
        "send_seconds": round(send_s, 2),
        "send_per_second": round(rows / send_s),
        # CPU per recipient, which a busy machine disturbs less than the rate
        "worker_cpu_us": round(own_cpu / rows * 1e6, 1),
        "redis_cpu_us": round(redis_cpu / rows * 1e6, 1),
        "import_peak_kib": import_peak // 1024,
        "send_peak_kib": send_peak // 1024,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _redis_cpu(store) -> float:
    info = await store.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_child(url: str, rows: int, batch: int, trace: bool) -> dict:
    command = [sys.executable, "-m", "ops.bench.campaigns", "--child", url, str(rows), str(batch)]
    if trace:
        command.append("--trace")
    done = subprocess.run(command, cwd=ROOT, env=child_env({}), capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def run(opts: argparse.Namespace) -> dict:
    sizes = [int(s) for s in opts.sizes.split(",")]
    with RedisServer() as server:
        ceiling = await raw_ceiling(server.url, max(sizes), opts.batch)
        timed = [await asyncio.to_thread(run_child, server.url, size, opts.batch, False) for size in sizes]
        ceiling = max(ceiling, await raw_ceiling(server.url, max(sizes), opts.batch))
        traced = (
            []
            if opts.no_memory
            else [await asyncio.to_thread(run_child, server.url, size, opts.batch, True) for size in sizes]
        )
    return {"raw_xadd_per_second": round(ceiling), "batch": opts.batch, "timed": timed, "traced": traced}


def render(result: dict) -> str:
    ceiling = result["raw_xadd_per_second"]
    lines = [
        f"raw stream ceiling (pipelined XADD of campaign messages, batch {result['batch']}): {ceiling:,}/s",
        "",
        f"{'rows':>8} {'import rows/s':>14} {'queued/s':>10} {'ratio':>6} {'CPU us/recipient: worker':>25}"
        f" {'redis':>6} {'max RSS':>10}",
    ]
    for row in result["timed"]:
        ratio = row["send_per_second"] / ceiling
        lines.append(
            f"{row['rows']:>8,} {row['import_per_second']:>14,} {row['send_per_second']:>10,} {ratio:>6.2f} "
            f"{row['worker_cpu_us']:>25} {row['redis_cpu_us']:>6} {row['max_rss_kib'] / 1024:>8.1f} MB"
        )
    if result["traced"]:
        lines += ["", f"{'rows':>8} {'heap peak: import':>18} {'send':>10}   (tracemalloc)"]
        for row in result["traced"]:
            lines.append(
                f"{row['rows']:>8,} {row['import_peak_kib'] / 1024:>15.1f} MB {row['send_peak_kib'] / 1024:>7.1f} MB"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench campaigns", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="audience sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=200, help="recipients per worker batch (and raw pipeline)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("URL", "ROWS", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        url, rows, batch = opts.child
        print(json.dumps(asyncio.run(child(url, int(rows), int(batch), opts.trace))), flush=True)
        return 0
    result = asyncio.run(run(opts))
    print(json.dumps(result, indent=2) if opts.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
