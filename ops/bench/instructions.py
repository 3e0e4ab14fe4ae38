"""Redis's instructions per contact, counted by valgrind's callgrind: what a change to the Lua costs.

    python -m ops.bench instructions [--contacts 900] [--batch 45] [--json]

The routing benchmark's ratio moves by a third within a minute on a shared machine; an
instruction count does not (the same binary and inputs give the same count, whatever else
the machine is doing), so this is how a change to the scripts is weighed. It starts
redis-server under callgrind with instrumentation off, applies the routing benchmark's
deployment (one tenant, 200 agents, all available) and routes 630 contacts first, so the
tenant's identities are past hash-max-listpack-entries (512) and held as a hash table, as a
busy tenant's are. Then it counts, instrumentation on: the ingest of N new contacts
(router.bus.ingest, one call each), then their routing (router.intake.route_batch over
batches of --batch entries, read as a routing worker reads them). The server's own idle work
(its cron) is measured for a second and taken off in proportion to each phase's length.
Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops.bench._load import deployment_toml, make_contacts
from ops.bench._router import make_available
from ops.redis_server import RedisServer
from router import bus, intake
from router.app import processes
from router.config import Deployment, load_deployment
from router.keys import ROUTING_GROUP, Keys
from router.settings import Settings
from router.store import Store, connect

TENANT = "bench0"
WARMUP = 630  # routed before counting: past hash-max-listpack-entries (512) identities
CONSUMER = "instructions"


class Callgrind:
    """A redis-server under callgrind, instrumentation switched on and off from outside."""

    def __init__(self, server: RedisServer, folder: Path) -> None:
        self.server, self.out = server, folder / "callgrind.out"
        grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}"]
        server.args = [*grind, *server.args]

    def _control(self, *options: str) -> None:
        assert self.server.process is not None
        subprocess.run(["callgrind_control", *options, str(self.server.process.pid)], check=True, capture_output=True)

    async def count(self, work) -> tuple[int, float]:
        """Instructions redis-server ran while `work` (a coroutine) ran, and its seconds."""
        self._control("--instr=on")
        started = time.perf_counter()
        await work
        seconds = time.perf_counter() - started
        self._control("--instr=off")
        self._control("--dump")
        dumps = sorted(self.out.parent.glob(self.out.name + "*"), key=lambda p: p.stat().st_mtime)
        total = 0
        for line in dumps[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
        for dump in dumps:
            dump.unlink()
        return total, seconds


async def measure(store: Store, deployment: Deployment, grind: Callgrind, contacts: int, batch: int) -> dict:
    stream = Keys(TENANT).inbound
    await bus.ensure_group(store, stream, ROUTING_GROUP)

    async def ingest(tag: str, n: int) -> None:
        for contact in make_contacts([TENANT], tag, n):
            await bus.ingest(store, contact)

    async def read(n: int) -> list[list[bus.Entry]]:
        batches: list[list[bus.Entry]] = []
        while sum(map(len, batches)) < n:
            reply = await store.redis.xreadgroup(ROUTING_GROUP, CONSUMER, {stream: ">"}, count=batch)
            batches.append([bus.Entry(stream, i.decode(), f[b"e"]) for _s, rows in reply for i, f in rows])
        return batches

    async def route(batches: list[list[bus.Entry]]) -> None:
        async def dead_letter(entry: bus.Entry, reason: str) -> None:
            raise RuntimeError(f"{entry.id} dead-lettered: {reason}")

        for entries in batches:
            await intake.route_batch(store, deployment, entries, dead_letter, CONSUMER)

    await ingest("warm", WARMUP)
    await route(await read(WARMUP))
    idle, idle_s = await grind.count(asyncio.sleep(1.0))
    per_s = idle / idle_s
    ingested, ingest_s = await grind.count(ingest("measured", contacts))
    batches = await read(contacts)
    routed, route_s = await grind.count(route(batches))
    return {
        "contacts": contacts,
        "batches": len(batches),
        "ingest_per_contact": round((ingested - per_s * ingest_s) / contacts),
        "route_per_contact": round((routed - per_s * route_s) / contacts),
        "idle_per_second": round(per_s),
    }


async def run(opts: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="cr-instructions-"))
    config = folder / "bench.toml"
    config.write_text(deployment_toml([TENANT], 200, 400))
    deployment = load_deployment(config)
    server = RedisServer()
    grind = Callgrind(server, folder)
    try:
        with server:
            store = connect(Settings(redis_url=server.url))
            await processes.prepare(store, deployment)
            await make_available(store, deployment)
            report = await measure(store, deployment, grind, opts.contacts, opts.batch)
            await store.redis.aclose()
            return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=900, help="contacts counted (900)")
    parser.add_argument("--batch", type=int, default=45, help="entries per route_batch, as a worker reads them (45)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    opts = parser.parse_args(argv)
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    report = asyncio.run(run(opts))
    if opts.json:
        print(json.dumps(report))
    else:
        print(
            f"redis-server instructions per contact (callgrind, {report['contacts']} contacts):\n"
            f"  ingest (router.bus.ingest)                  {report['ingest_per_contact']:>9,}\n"
            f"  routing (intake + offers, batches of {opts.batch}) {report['route_per_contact']:>9,}"
        )
    return 0
