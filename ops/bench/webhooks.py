"""Webhook benchmark: signed inbound SMS webhooks through the web process, against a bare 200 of the same process.

    python -m ops.bench webhooks [--requests N] [--concurrency C] [--json]

It starts its own redis-server (ops.redis_server.RedisServer) and ONE web
process as operations run it (``contactrouter run web``, REDIS_URL, a
deployment file with one tenant that owns one SMS number and a Twilio account,
PUBLIC_URL), then drives it from an aiohttp client in this process over
``--concurrency`` keep-alive loopback connections, each sending its next request
when the previous one was answered (a closed loop). Every request is built and
signed before the clock starts, so signing costs the measurement nothing.

1. Bare 200: GET /healthz of the same web process. Nothing was added to the
   product for the benchmark; /healthz is the cheapest thing the process
   answers (routing, an aiohttp handler, a small JSON body). It runs before
   and after the webhooks, and the better run counts (other load on the
   machine only ever lowers it).
2. Webhooks: POST /twilio/sms with X-Twilio-Signature (HMAC-SHA1 over
   PUBLIC_URL + path + sorted form, checked by twilio's RequestValidator),
   a distinct MessageSid each: form parse, tenant by number, signature,
   field checks, then the `ingest` script appends the contact to the tenant's
   inbound stream, then the TwiML answer. Afterwards the inbound stream is read
   back: it must hold exactly one new entry per 200, with those MessageSids.

Reported per phase: requests/s (200s / wall time of the phase), latency p50/p99
of the 200s (send .. answer read; closed loop, so it includes waiting behind
the other connections), CPU of the web process, redis-server, this process (the
load generator) and the rest of the machine, and CPU per request.
This is a measurement, not a test: nothing asserts on timing.

The parts are in _http.py (deployment, web process, signed requests, load loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from ops.bench._http import (
    NUMBER,
    TENANT,
    TOKEN_ENV,
    Request,
    deployment_toml,
    drive,
    healthz,
    signed_sms,
    start_web,
    stop_web,
    wait_ready,
)
from ops.bench._measure import CpuMeter, command_delta, command_stats, percentile, proc_cpu, redis_cpu, self_cpu
from ops.bench._processes import check_alive, code_version
from ops.bench._streams import as_text, last_id
from ops.redis_server import RedisServer, free_port
from router import events
from router.keys import Keys


async def phase(
    name: str,
    session: aiohttp.ClientSession,
    requests: list[Request],
    opts: argparse.Namespace,
    r: Any,
    web: subprocess.Popen,
) -> tuple[dict, set[str]]:
    """Send `requests`, measuring throughput, latency, CPU and Redis work; returns the phase and its 200 sids."""
    stats0 = await command_stats(r)
    meter = CpuMeter(r, [web.pid])
    raw0 = (proc_cpu(web.pid), await redis_cpu(r), self_cpu())
    await meter.start()
    outcome = await drive(session, requests, opts.concurrency)
    cpu = await meter.stop()
    raw = [b - a for a, b in zip(raw0, (proc_cpu(web.pid), await redis_cpu(r), self_cpu()), strict=True)]
    stats = command_delta(stats0, await command_stats(r))
    check_alive([web])
    ok = outcome.statuses.get(200, 0)
    lat = outcome.latencies_ms
    scripts_us = sum(us for cmd, (_calls, us) in stats.items() if cmd in ("evalsha", "eval"))
    commands = {cmd: calls for cmd, (calls, _us) in stats.items() if cmd not in ("info",)}
    per_s = ok / outcome.seconds if outcome.seconds else float("nan")
    result = {
        "name": name,
        "requests": len(requests),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items(), key=lambda kv: str(kv[0]))},
        "seconds": round(outcome.seconds, 3),
        "per_second": round(per_s, 1),
        "p50_ms": round(percentile(lat, 50), 2),
        "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
        "cpu_percent": {
            "web": cpu["consumers"][0],
            "redis": cpu["redis"],
            "loadgen": cpu["producers"],
            "others": cpu["others"],
        },
        # CPU per answered request: what one request costs each party (us).
        "cpu_us_per_request": {
            party: round(1e6 * seconds / ok, 1) if ok else float("nan")
            for party, seconds in zip(("web", "redis", "loadgen"), raw, strict=True)
        },
        "redis_commands": commands,
        "redis_script_us_per_request": round(scripts_us / ok, 1) if ok else 0.0,
    }
    if outcome.sample_error:
        result["sample_error"] = outcome.sample_error
    return result, outcome.ok_sids


async def stream_check(r: Any, stream: str, after: str, ok_sids: set[str]) -> dict:
    """The inbound entries added after `after`: as many as the 200s, and exactly their MessageSids."""
    found: list[str] = []
    start = after
    while True:
        rows = await r.xrange(stream, min=f"({start}", max="+", count=10_000)
        if not rows:
            break
        found += [events.decode_inbound(fields[b"e"]).provider_id for _id, fields in rows]
        start = as_text(rows[-1][0])
    return {
        "stream": stream,
        "new_entries": len(found),
        "answered_200": len(ok_sids),
        "exact": len(found) == len(ok_sids) and set(found) == ok_sids,
        "unexpected": len(set(found) - ok_sids),
        "missing": len(ok_sids - set(found)),
        "stream_length": await r.xlen(stream),
    }


async def run(opts: argparse.Namespace) -> dict:
    logdir = Path(tempfile.mkdtemp(prefix="cr-bench-webhooks-"))
    config = logdir / "bench.toml"
    config.write_text(deployment_toml())
    token = secrets.token_hex(16)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    inbound = Keys(TENANT).inbound
    web: subprocess.Popen | None = None
    try:
        with RedisServer() as server:
            r = aioredis.Redis.from_url(server.url)
            version = (await r.info("server"))["redis_version"]
            env = {
                "REDIS_URL": server.url,
                "CONTACTROUTER_CONFIG": str(config),
                TOKEN_ENV: token,
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "PUBLIC_URL": base,
                "TWILIO_SIGNATURES": "on",  # whatever this shell says: the checked path is measured
            }
            web, label = start_web(env, logdir, opts.profile)
            # Build and sign everything before the clock starts.
            warm_sms = [signed_sms(base, token, i) for i in range(opts.warmup)]
            sms = [signed_sms(base, token, i) for i in range(opts.requests)]
            bare = [healthz(base)] * opts.requests
            connector = aiohttp.TCPConnector(limit=opts.concurrency, limit_per_host=opts.concurrency)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await wait_ready(session, base, web)
                # Warm up: connections, the script cache, first-call paths on both routes.
                await drive(session, [healthz(base)] * opts.warmup, opts.concurrency)
                warm, _ = await phase("warm-up webhooks", session, warm_sms, opts, r, web)
                mark = await last_id(r, inbound)
                first, _ = await phase("bare 200: GET /healthz (first)", session, bare, opts, r, web)
                hooks, ok_sids = await phase("POST /twilio/sms, signed -> inbound stream", session, sms, opts, r, web)
                last, _ = await phase("bare 200: GET /healthz (last)", session, bare, opts, r, web)
            check = await stream_check(r, inbound, mark, ok_sids)
            await r.aclose()
            stop_web(web)
            # The web process's own account of any failure (its log goes with the temp dir).
            log = (logdir / "web.log").read_text(errors="replace").splitlines()
            errors = sorted({line for line in log if "Error" in line and not line.startswith((" ", "Traceback"))})
            best = max(first, last, key=lambda p: p["per_second"])
            hooks["ratio"] = round(hooks["per_second"] / best["per_second"], 3) if best["per_second"] else float("nan")
            return {
                "setup": {
                    "redis": f"redis-server {version} on 127.0.0.1:{server.port} (no AOF, no RDB)",
                    "web": f"{label} on {base} (PUBLIC_URL {base}), one process",
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "aiohttp": aiohttp.__version__,
                    "code": code_version("router", "channels"),
                    "tenant": f"{TENANT}: SMS number {NUMBER}, Twilio account with its token in ${TOKEN_ENV}",
                    "requests": opts.requests,
                    "concurrency": opts.concurrency,
                    "warmup": opts.warmup,
                    "baseline": "GET /healthz of the same web process (nothing added to production code)",
                },
                "warmup": {k: v for k, v in warm.items() if k in ("name", "ok", "statuses", "sample_error")},
                "baseline_runs": [first, last],
                "baseline": best,
                "webhooks": hooks,
                "stream": check,
                "web_log_errors": errors[:5],
            }
    finally:
        if web is not None:
            stop_web(web)
        shutil.rmtree(logdir, ignore_errors=True)


def render(report: dict) -> str:
    s, hooks, best, check = report["setup"], report["webhooks"], report["baseline"], report["stream"]

    def row(p: dict, ratio: float) -> str:
        cpu, per = p["cpu_percent"], p["cpu_us_per_request"]
        return (
            f"{p['name']:<44}{p['ok']:>6}/{p['requests']:<6}{p['seconds']:>8.2f}{p['per_second']:>8.0f}{ratio:>7.2f}"
            f"{p['p50_ms']:>8.2f}{p['p99_ms']:>8.2f}  {cpu['web']:>5}{cpu['redis']:>6}{cpu['loadgen']:>8}"
            f"{cpu['others']:>7}  {per['web']:>6.0f}{per['redis']:>6.0f}{per['loadgen']:>8.0f}"
        )

    lines = [
        f"webhooks benchmark: {s['web']}",
        f"  {s['redis']}; {s['cpus']} CPUs, Python {s['python']}, aiohttp {s['aiohttp']}",
        f"  code: {s['code']}",
        f"  tenant {s['tenant']}",
        f"  load: one aiohttp client in this process, {s['concurrency']} keep-alive loopback connections, closed loop"
        " (each sends its next request when",
        f"  the last was answered); {s['requests']} requests per phase, all built and signed before timing;"
        f" {s['warmup']} warm-up requests of each kind",
        f"  bare-200 baseline: {s['baseline']}",
        "",
        f"{'phase':<44}{'200s/sent':>13}{'seconds':>8}{'per s':>8}{'ratio':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"  {'cpu %: web redis loadgen others':<33}{'cpu us/req: web redis loadgen'}",
    ]
    first, last = report["baseline_runs"]
    top = best["per_second"] or float("nan")
    lines.append(row(first, first["per_second"] / top))
    lines.append(row(hooks, hooks["ratio"]))
    lines.append(row(last, last["per_second"] / top))
    lines += [
        f"  ratio = per s / the better /healthz run ({best['per_second']:.0f}/s). per s counts 200s over the phase's"
        " wall time; latency",
        "  is send .. answer read of the 200s. cpu % of one CPU over the phase (web: the web process; loadgen:"
        " this process); others = the rest",
        "  of the machine. cpu us/req = CPU time of each party / 200s.",
        "",
    ]
    for p in (report["warmup"], first, hooks, last):
        bad = {k: v for k, v in p["statuses"].items() if k != "200"}
        if bad:
            lines.append(f"  NOT 200 in {p['name']}: {bad}; e.g. {p.get('sample_error', '')}")
    lines += [f"  web process log: {line}" for line in report["web_log_errors"]]
    verdict = "exactly" if check["exact"] else "NOT exactly"
    lines.append(
        f"  inbound stream {check['stream']}: {check['new_entries']} new entries for {check['answered_200']} webhooks"
        f" answered 200 -- {verdict} their MessageSids"
        + ("" if check["exact"] else f" ({check['missing']} missing, {check['unexpected']} unexpected)")
        + f"; {check['stream_length']} entries in all with the {report['warmup']['ok']} warm-up ones"
    )
    cmds = ", ".join(f"{c} {n}" for c, n in sorted(hooks["redis_commands"].items(), key=lambda kv: -kv[1]))
    lines.append(
        f"  Redis during the webhooks: {hooks['redis_script_us_per_request']:.1f} us of script time per webhook"
        f" (INFO commandstats: {cmds})"
    )
    extra_web = hooks["cpu_us_per_request"]["web"] - best["cpu_us_per_request"]["web"]
    lines.append(
        f"  the web process spent {hooks['cpu_us_per_request']['web']:.0f} us of CPU per webhook against"
        f" {best['cpu_us_per_request']['web']:.0f} us per /healthz: {extra_web:.0f} us for the webhook's own work"
    )
    loadgen = max(p["cpu_percent"]["loadgen"] for p in (first, hooks, last))
    if loadgen >= 90:
        lines.append(
            f"  note: the load generator used up to {loadgen}% of a CPU; where it is near 100% it, not the web"
            " process, may be the limit"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.bench webhooks", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5000, help="requests in each measured phase (5000)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent keep-alive connections (32)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up requests of each kind (200)")
    p.add_argument("--profile", metavar="FILE", help="run the web process under cProfile, stats to FILE")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    if opts.requests < 1 or opts.concurrency < 1 or opts.warmup < 0:
        parser().error("--requests and --concurrency must be >= 1, --warmup >= 0")
    report = asyncio.run(run(opts))
    print(json.dumps(report, indent=2) if opts.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
