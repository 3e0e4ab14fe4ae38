"""`contactrouter up` makes demo logins with passwords fresh for each start, prints
them once, and the inbox serves them: Alice logs in, goes available and is offered the
demo contact, which waited for her (the demo agents start offline: nobody misses offers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import aiohttp
import pytest

from ops.redis_server import free_port
from tests.processes import CLI, wait_for
from tests.router.test_inbox_pages import csrf_of, log_in

pytestmark = pytest.mark.e2e  # a `contactrouter up` process per test


def start_up() -> tuple[subprocess.Popen, int, dict[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CONTACTROUTER_CONFIG")}
    env["PORT"] = str(port)
    process = subprocess.Popen([CLI, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def banner_done() -> bool:
        lines.append(process.stdout.readline())
        assert process.poll() is None, "".join(lines)
        return lines[-1].startswith("Next:")

    wait_for(banner_done, "the start-up banner")
    start = next(i for i, line in enumerate(lines) if "demo logins" in line)
    logins = dict(line.split() for line in lines[start + 1 : -1])
    return process, port, logins


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=15)
    finally:
        process.kill()


async def test_up_prints_demo_logins_with_fresh_passwords_and_alice_can_log_in() -> None:
    process, port, logins = start_up()
    try:
        assert {"alice", "bob", "carol", "supervisor"} <= set(logins)
        assert len(set(logins.values())) == len(logins) and all(len(p) >= 16 for p in logins.values())
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            response = await log_in(client, "alice", logins["alice"])
            assert response.status == 303 and response.headers["Location"] == "/inbox"
            page = await (await client.get("/inbox")).text()
            assert "Hi, my meter reading looks wrong this month" not in page, "offered to nobody at a desk"
            assert re.search(r'data-tenant="acme">offline<', page)
            form = {"presence": "available", "csrf": csrf_of(page)}
            assert (await client.post("/inbox/presence", data=form)).status == 200
            page = await (await client.get("/inbox")).text()
            assert re.search(r"Hi, my meter reading looks wrong this month", page), "the demo contact is offered"
    finally:
        stop(process)
    again, _port, second = start_up()
    stop(again)
    assert second["alice"] != logins["alice"]  # a new password on every start
