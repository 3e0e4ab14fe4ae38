"""The raw ceiling: XADD / XREADGROUP / XACK with no routing work, and its consumer process.

The consumer runs as ``python -m ops.bench._raw URL STREAM GROUP NAME WARMUP TOTAL BATCH``
and prints one JSON line when it has acknowledged TOTAL entries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

from redis.asyncio import Redis

from ops.bench._load import make_contacts, produce
from ops.bench._measure import CpuMeter, self_cpu
from ops.bench._processes import ROOT, child_env
from ops.bench._streams import group_state, wait_blocked, wait_consumed
from router import events
from router.keys import ROUTING_GROUP
from router.settings import Settings
from router.store import connect

RAW_STREAM = "bench:{raw}:inbound"


def client(url: str) -> Redis:
    """A client as the router's (router.store.connect): the same connection class and pool."""
    return connect(Settings(redis_url=url)).redis


def consumer_main(argv: list[str]) -> None:
    """The consumer process: XREADGROUP COUNT=batch, XACK per batch, until `total` entries."""
    url, stream, group, name = argv[0], argv[1], argv[2], argv[3]
    warmup, total, batch = int(argv[4]), int(argv[5]), int(argv[6])

    async def run() -> dict:
        r = client(url)
        count = batches = 0
        last_ack = cpu_warm = 0.0
        try:
            while count < total:
                reply = await r.xreadgroup(group, name, {stream: ">"}, count=batch, block=1000)
                for _stream, items in reply or []:
                    ids = [entry_id for entry_id, fields in items if fields]
                    if ids:
                        await r.xack(stream, group, *ids)
                        count += len(ids)
                        batches += 1
                        last_ack = time.time()
                        if not cpu_warm and count >= warmup:
                            cpu_warm = self_cpu()
        finally:
            await r.aclose()
        return {"count": count, "batches": batches, "last_ack": last_ack, "cpu_s": self_cpu() - cpu_warm}

    print(json.dumps(asyncio.run(run())), flush=True)


def spawn_consumer(url: str, warmup: int, total: int, batch: int) -> subprocess.Popen:
    args = [url, RAW_STREAM, ROUTING_GROUP, "raw-0", str(warmup), str(total), str(batch)]
    command = [sys.executable, "-m", "ops.bench._raw", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, env=child_env({}))


async def raw_ceiling(url: str, opts: argparse.Namespace, tenants: list[str]) -> dict:
    """Ceiling = N / (first XADD .. last XACK), from `opts.producers` tasks here and one consumer process."""
    r = client(url)
    try:
        await r.xgroup_create(RAW_STREAM, ROUTING_GROUP, id="0", mkstream=True)
        total = opts.warmup + opts.contacts
        consumer = spawn_consumer(url, opts.warmup, total, opts.batch)
        try:
            await wait_blocked(r, 1, [consumer])

            async def add(contact: events.InboundContact) -> None:
                await r.xadd(RAW_STREAM, {"e": events.encode(contact)})

            await produce(make_contacts(tenants, "raw-warm", opts.warmup), add, opts.producers)
            await wait_consumed(r, [RAW_STREAM], ROUTING_GROUP, [consumer], 30)
            contacts = make_contacts(tenants, "raw", opts.contacts)
            meter = CpuMeter(r, [])
            await meter.start()
            started = time.time()
            produce_s = await produce(contacts, add, opts.producers)
            backlog = (await group_state(r, RAW_STREAM, ROUTING_GROUP))[0]
            out, _ = await asyncio.to_thread(consumer.communicate, timeout=120)
            result = json.loads(out.decode().strip().splitlines()[-1])
            cpu = await meter.stop([result["cpu_s"]])
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
        seconds = result["last_ack"] - started
        return {
            "contacts": opts.contacts,
            "seconds": round(seconds, 3),
            "per_second": round(opts.contacts / seconds, 1),
            "added_per_second": round(opts.contacts / produce_s, 1),
            "backlog_when_added": backlog,
            "avg_batch": round(total / max(result["batches"], 1), 1),
            "cpu_percent": cpu,
        }
    finally:
        await r.delete(RAW_STREAM)
        await r.aclose()


if __name__ == "__main__":
    consumer_main(sys.argv[1:])
