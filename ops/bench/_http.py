"""The webhook benchmark's parts: its deployment, the web process, the pre-signed requests, the load generator."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

from channels._twilio_auth import FORM_TYPE
from channels.sms.inbound import PATH
from ops.bench._load import BODY
from ops.bench._processes import ROOT, check_alive, child_env

TENANT = "bench"
NUMBER = "+15550100001"
TOKEN_ENV = "BENCH_TWILIO_TOKEN"
# A fixed, made-up account: the benchmark never talks to Twilio.
ACCOUNT_SID = "AC" + "b3" * 16


def deployment_toml() -> str:
    """One tenant that owns one SMS number, with a Twilio account whose token is in $BENCH_TWILIO_TOKEN."""
    return "\n".join(
        [
            "[[tenants]]",
            f'id = "{TENANT}"',
            'entry = { default = "support" }',
            f'twilio = {{ account_sid = "{ACCOUNT_SID}", auth_token_env = "{TOKEN_ENV}" }}',
            "",
            "[[tenants.queues]]",
            'id = "support"',
            'target = "true"',
            "",
            "[[tenants.agents]]",
            'id = "a000"',
            "",
            "[tenants.sms]",
            f'numbers = ["{NUMBER}"]',
            "",
        ]
    )


def web_command(profile: str | None) -> tuple[list[str], str]:
    """How the web process is started (as operations run it), and a label saying so."""
    if profile:
        return [sys.executable, "-m", "cProfile", "-o", profile, "-m", "router.app.cli", "run", "web"], (
            "python -m cProfile -m router.app.cli run web"
        )
    script = Path(sys.executable).with_name("contactrouter")  # the console script next to this interpreter
    if not script.exists():
        raise RuntimeError(f"no console script {script}: install the project (pip install -e .)")
    return [str(script), "run", "web"], "contactrouter run web"


def start_web(env: dict[str, str], logdir: Path, profile: str | None) -> tuple[subprocess.Popen, str]:
    command, label = web_command(profile)
    log = logdir / "web.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(env))
    proc.bench_log = str(log)  # type: ignore[attr-defined]
    return proc, label


def stop_web(proc: subprocess.Popen) -> None:
    """SIGTERM (a profiled process writes its stats on the way out); kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen, within: float = 30) -> None:
    """Until GET /readyz answers 200: listening, store reachable, consumer groups created."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        check_alive([proc])
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the web process did not become ready within {within:.0f}s; see {proc.bench_log}")  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] | None = None
    sid: str = ""


def signed_sms(base: str, token: str, i: int) -> Request:
    """An incoming-SMS webhook as Twilio posts it (its usual fields), with a fresh MessageSid, signed for
    PUBLIC_URL + PATH. Signing happens here, before any timing."""
    sid = f"SM{uuid.uuid4().hex}"
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "94107",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": BODY,
        "FromCountry": "US",
        "To": NUMBER,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"+1415555{i % 10_000:04d}",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(token).compute_signature(base + PATH, params)
    return Request(
        "POST",
        base + PATH,
        urlencode(params).encode(),
        {SIGNATURE_HEADER: signature, "Content-Type": FORM_TYPE},
        sid,
    )


def healthz(base: str) -> Request:
    return Request("GET", base + "/healthz")


@dataclass
class Outcome:
    """What one phase of requests got back."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s, sorted
    statuses: Counter = field(default_factory=Counter)  # status (or exception name) -> count
    ok_sids: set[str] = field(default_factory=set)
    sample_error: str = ""


async def drive(session: aiohttp.ClientSession, requests: list[Request], concurrency: int) -> Outcome:
    """Send every request from `concurrency` tasks, each waiting for its answer before sending the next
    (a closed loop over `concurrency` keep-alive connections). Latency: send .. whole answer read."""
    outcome = Outcome()
    pending = iter(requests)  # shared: next() never yields to the loop, so each request goes once
    clock = time.perf_counter

    async def one_connection() -> None:
        for req in pending:
            started = clock()
            try:
                async with session.request(req.method, req.url, data=req.body, headers=req.headers) as response:
                    text = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome.statuses[type(exc).__name__] += 1
                outcome.sample_error = outcome.sample_error or f"{req.method} {req.url}: {exc!r}"
                continue
            elapsed = clock() - started
            outcome.statuses[status] += 1
            if status == 200:
                outcome.latencies_ms.append(elapsed * 1000)
                if req.sid:
                    outcome.ok_sids.add(req.sid)
            elif not outcome.sample_error:
                outcome.sample_error = f"{req.method} {req.url}: {status} {text[:300].decode(errors='replace')}"

    started = clock()
    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    outcome.seconds = clock() - started
    outcome.latencies_ms.sort()
    return outcome
