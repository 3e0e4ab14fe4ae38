"""README's run command: `contactrouter up` runs every role on the embedded store
with demo data, and the CLI in another terminal drives it as an agent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ops.redis_server import free_port

T = TypeVar("T")

CLI = str(Path(sys.executable).parent / "contactrouter")


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": url}
    env.pop("CONTACTROUTER_CONFIG", None)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=30)


def _wait_for(predicate: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def up() -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CONTACTROUTER_CONFIG")}
    env["PORT"] = str(port)
    process = subprocess.Popen([CLI, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def store_url() -> str | None:
        line = process.stdout.readline()
        lines.append(line)
        match = re.search(r"store:\s+(redis://\S+)", line)
        if process.poll() is not None:
            pytest.fail("contactrouter up exited:\n" + "".join(lines))
        return match.group(1) if match else None

    url = _wait_for(store_url, "the embedded store's URL on the console")
    yield url, port
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()


def test_up_serves_health_and_an_agent_takes_the_demo_contact(up: tuple[str, int]) -> None:
    url, port = up
    health = _wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz"), "readiness")
    assert health == 200

    offers = _wait_for(lambda: _cli(url, "agent", "offers", "--tenant", "acme", "alice").stdout.strip(), "an offer")
    reservation = offers.split()[0]
    conversation = reservation.rsplit(".", 1)[0]
    assert _cli(url, "agent", "accept", "--tenant", "acme", "alice", reservation).returncode == 0

    reply = _cli(url, "agent", "reply", "--tenant", "acme", "alice", conversation, "Thanks, on it")
    assert reply.returncode == 0, reply.stderr
    outbox = _wait_for(lambda: "Thanks, on it" in _cli(url, "outbox", "--tenant", "acme").stdout, "the sandbox send")
    assert outbox

    closed = _cli(url, "agent", "close", "--tenant", "acme", "alice", conversation, "--disposition", "resolved")
    assert closed.returncode == 0, closed.stderr
    shown = _cli(url, "conversation", "--tenant", "acme", conversation).stdout
    assert '"state": "closed"' in shown and "Thanks, on it" in shown


def test_cli_refuses_bad_input_with_one_line(up: tuple[str, int]) -> None:
    url, _port = up
    bad_number = _cli(url, "contact", "add", "--tenant", "acme", "--channel", "sms", "--from", "+1 555 BAD", "hi")
    assert bad_number.returncode == 2
    assert "not a possible phone number" in bad_number.stderr
    unknown = _cli(url, "agent", "accept", "--tenant", "acme", "alice", "no-such-reservation")
    assert unknown.returncode == 2 and "unknown" in unknown.stderr
    wrong_tenant = _cli(url, "outbox", "--tenant", "initech")
    assert wrong_tenant.returncode == 2 and "no tenant 'initech'" in wrong_tenant.stderr


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


def test_status_shows_waiting_contacts_and_agents(up: tuple[str, int]) -> None:
    url, _port = up
    added = _cli(url, "contact", "add", "--tenant", "globex", "--channel", "sms", "--from", "+15557654321", "hi")
    assert added.returncode == 0, added.stderr
    # globex's demo agent carol is available with room, so the new contact is offered, not waiting
    status = _wait_for(
        lambda: (out := _cli(url, "status", "--tenant", "globex").stdout) and "sms 2/" in out and out,
        "carol holding both globex contacts",
    )
    assert "sales" in status and "carol" in status and "available" in status
