"""Inbound email benchmark: small messages over SMTP into the tenant's inbound stream,
against the same aiosmtpd server with a handler that does nothing, in one run.

    python -m ops.bench email [--messages N] [--connections K] [--redis-url URL] [--json]

Each phase starts one server process (this module with --serve) on a free
loopback port, as the `smtp` process runs it (workers.smtp.start: aiosmtpd, the
same SMTP options), and drives it from this process over K concurrent SMTP
sessions, each sending its share of N messages one after another in the same
session (MAIL, RCPT, DATA; a closed loop). Every message is built before the
clock starts; each has its own Message-ID (the handler drops repeats).

1. null handler: aiosmtpd with a handler that accepts every recipient and answers
   250 to every DATA without looking at it: the SMTP ceiling of one process.
2. handler, embedded store: workers.smtp's InboundHandler (MIME parse, tenant by
   address, normalise, the `ingest` script onto the inbound stream, then 250) on
   the embedded store (fakeredis) inside the server process.
3. handler, Redis (with --redis-url): the same on that Redis; its tenant's keys
   are removed before and after.

Reported per phase: messages/s (250s over the phase's wall time), the ratio to
the null handler, the server process's CPU per message, and the inbound stream's
length afterwards (it must equal the 250s). This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

from ops.bench._measure import proc_cpu
from ops.bench._processes import child_env
from ops.redis_server import free_port

TENANT = "acme"
ADDRESS = "help@acme.example"
DEPLOYMENT = f"""
[[tenants]]
id = "{TENANT}"
entry = {{ default = "support" }}
email = {{ addresses = ["{ADDRESS}"] }}

[[tenants.queues]]
id = "support"
"""


def message(i: int, run: str) -> bytes:
    body = "My meter reading for March is 4312 kWh; the bill says 5312. Could you check it, please?\r\n" * 3
    return (
        f"From: Customer {i} <customer{i}@example.com>\r\nTo: {ADDRESS}\r\nSubject: Meter reading {i}\r\n"
        f"Message-ID: <bench-{run}-{i}@example.com>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}.\r\n"
    ).encode()


# --- the server process ---------------------------------------------------------------


class NullHandler:
    """Accepts every recipient and every message and does nothing with them."""

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 2.0.0 OK"


async def serve(kind: str, port: int, redis_url: str) -> None:
    from aiosmtpd.smtp import SMTP

    from router import queues
    from router.config import parse_deployment
    from router.keys import Keys
    from router.settings import Settings
    from router.store import connect
    from workers import smtp

    settings = Settings(redis_url=redis_url or None, smtp_port=port, attachment_dir=tempfile.mkdtemp())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    store = None
    if kind == "null":
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(NullHandler(), data_size_limit=settings.smtp_max_bytes, enable_SMTPUTF8=True, timeout=60),
            settings.smtp_host,
            port,
        )
    else:
        deployment = parse_deployment(DEPLOYMENT, "bench.toml")
        store = connect(settings)
        await store.load_scripts()
        for key in await store.redis.keys(f"{Keys(TENANT).base}:*"):
            await store.redis.delete(key)
        await queues.apply_tenant(store, deployment.tenants[0])
        server = await smtp.start(store, deployment, settings)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    if store is not None:
        length = await store.redis.xlen(Keys(TENANT).inbound)
        for key in await store.redis.keys(f"{Keys(TENANT).base}:*"):
            await store.redis.delete(key)
        await store.close()
    else:
        length = -1
    print(f"inbound {length}", flush=True)


# --- the load ---------------------------------------------------------------------------


async def session(port: int, messages: list[bytes]) -> int:
    """One SMTP session sending `messages` one after another; returns how many got 250."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:  # a multi-line reply ends with the line "code SP text"
            line = await reader.readline()
            if not line:
                raise ConnectionError("the server closed the session")
            if line[3:4] != b"-":
                return line

    await reply()  # greeting
    writer.write(b"HELO bench.example\r\n")
    await reply()
    accepted = 0
    for data in messages:
        writer.write(b"MAIL FROM:<customer@example.com>\r\n")
        await reply()
        writer.write(f"RCPT TO:<{ADDRESS}>\r\n".encode())
        if not (await reply()).startswith(b"250"):
            continue
        writer.write(b"DATA\r\n")
        await reply()
        writer.write(data)
        accepted += (await reply()).startswith(b"250")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return accepted


def phase(name: str, kind: str, opts: argparse.Namespace, redis_url: str = "") -> dict:
    port = free_port()
    command = [sys.executable, "-m", "ops.bench.email", "--serve", kind, "--port", str(port)]
    if redis_url:
        command += ["--redis-url", redis_url]
    env = child_env({"LOG_LEVEL": opts.log_level})
    with tempfile.TemporaryFile() as errors:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
        try:
            if server.stdout.readline().strip() != "ready":
                errors.seek(0)
                raise RuntimeError(f"{name}: the server did not start:\n{errors.read().decode()[-3000:]}")
            warm = [message(i, f"{kind}-warm") for i in range(opts.warmup)]
            load = [message(i, f"{kind}-{time.time_ns()}") for i in range(opts.messages)]
            asyncio.run(drive(port, warm, opts.connections))
            cpu0 = proc_cpu(server.pid)
            started = time.perf_counter()
            accepted = asyncio.run(drive(port, load, opts.connections))
            seconds = time.perf_counter() - started
            cpu = proc_cpu(server.pid) - cpu0
        finally:
            server.send_signal(signal.SIGTERM)
            out, _ = server.communicate(timeout=30)
    stream = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("inbound")), -1)
    return {
        "name": name,
        "messages": opts.messages,
        "accepted": accepted,
        "seconds": round(seconds, 3),
        "per_second": round(accepted / seconds, 1) if seconds else float("nan"),
        "server_cpu_percent": round(100 * cpu / seconds, 1) if seconds else float("nan"),
        "server_cpu_us_per_message": round(1e6 * cpu / accepted, 1) if accepted else float("nan"),
        # the warm-up messages are on the stream too
        "inbound_stream": stream if stream < 0 else stream - opts.warmup,
    }


async def drive(port: int, messages: list[bytes], connections: int) -> int:
    shares = [messages[i::connections] for i in range(connections)]
    return sum(await asyncio.gather(*(session(port, share) for share in shares if share)))


def run(opts: argparse.Namespace) -> dict:
    phases = [phase("null handler (aiosmtpd, 250 to everything)", "null", opts)]
    phases.append(phase("InboundHandler, embedded store (fakeredis)", "handler", opts))
    if opts.redis_url:
        phases.append(phase("InboundHandler, Redis", "handler", opts, opts.redis_url))
    ceiling = phases[0]["per_second"]
    for p in phases:
        p["ratio"] = round(p["per_second"] / ceiling, 3) if ceiling else float("nan")
    return {
        "setup": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "messages": opts.messages,
            "connections": opts.connections,
            "warmup": opts.warmup,
            "message_bytes": len(message(0, "x")),
            "log_level": opts.log_level,
            "redis_url": opts.redis_url or "",
        },
        "phases": phases,
    }


def render(report: dict) -> str:
    s = report["setup"]
    lines = [
        f"email benchmark: {s['messages']} messages of {s['message_bytes']} bytes over {s['connections']} concurrent"
        f" SMTP sessions on loopback ({s['warmup']} warm-up); {s['cpus']} CPUs, Python {s['python']};"
        f" server LOG_LEVEL {s['log_level']}",
        "",
        f"{'phase':<46}{'250s':>7}{'seconds':>9}{'per s':>8}{'ratio':>7}{'server cpu %':>14}{'us/msg':>8}{'stream':>8}",
    ]
    for p in report["phases"]:
        lines.append(
            f"{p['name']:<46}{p['accepted']:>7}{p['seconds']:>9.2f}{p['per_second']:>8.0f}{p['ratio']:>7.2f}"
            f"{p['server_cpu_percent']:>14}{p['server_cpu_us_per_message']:>8.0f}"
            f"{p['inbound_stream'] if p['inbound_stream'] >= 0 else '-':>8}"
        )
    lines.append("  ratio = per s / the null handler's; stream = inbound entries added by the phase (= its 250s)")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.bench email", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000, help="messages per phase (3000)")
    p.add_argument("--connections", type=int, default=8, help="concurrent SMTP sessions (8)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up messages per phase (200)")
    p.add_argument("--redis-url", default="", help="also measure the handler on this Redis (its acme keys are wiped)")
    p.add_argument("--log-level", default="INFO", help="the server's log level, as the smtp process's (INFO)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--serve", choices=("null", "handler"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    if opts.serve:
        logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), stream=sys.stderr)
        asyncio.run(serve(opts.serve, opts.port, opts.redis_url))
        return 0
    if opts.messages < 1 or opts.connections < 1 or opts.warmup < 0:
        parser().error("--messages and --connections must be >= 1, --warmup >= 0")
    report = run(opts)
    print(json.dumps(report, indent=2) if opts.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
