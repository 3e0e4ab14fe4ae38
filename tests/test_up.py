"""README's run command: `contactrouter up` runs every role on the embedded store
with demo data, and the CLI in another terminal drives it as an agent."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request

import pytest

from ops.redis_server import free_port
from tests.processes import CLI, run_cli, running_up, wait_for

pytestmark = pytest.mark.e2e  # `contactrouter up` and the CLI, each in its own process


def test_up_serves_health_and_an_agent_takes_the_demo_contact(up: tuple[str, int]) -> None:
    url, port = up
    health = wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz"), "readiness")
    assert health == 200

    # the demo agents are offline until someone goes available: nobody misses an offer
    assert run_cli(url, "agent", "offers", "--tenant", "acme", "alice").stdout.strip() == ""
    assert run_cli(url, "agent", "login", "--tenant", "acme", "alice").returncode == 0
    offers = wait_for(lambda: run_cli(url, "agent", "offers", "--tenant", "acme", "alice").stdout.strip(), "an offer")
    reservation = offers.split()[0]
    conversation = reservation.rsplit(".", 1)[0]
    assert run_cli(url, "agent", "accept", "--tenant", "acme", "alice", reservation).returncode == 0

    reply = run_cli(url, "agent", "reply", "--tenant", "acme", "alice", conversation, "Thanks, on it")
    assert reply.returncode == 0, reply.stderr
    outbox = wait_for(lambda: "Thanks, on it" in run_cli(url, "outbox", "--tenant", "acme").stdout, "the sandbox send")
    assert outbox

    closed = run_cli(url, "agent", "close", "--tenant", "acme", "alice", conversation, "--disposition", "resolved")
    assert closed.returncode == 0, closed.stderr
    shown = run_cli(url, "conversation", "--tenant", "acme", conversation).stdout
    assert '"state": "closed"' in shown and "Thanks, on it" in shown


def test_cli_refuses_bad_input_with_one_line(up: tuple[str, int]) -> None:
    url, _port = up
    bad_number = run_cli(url, "contact", "add", "--tenant", "acme", "--channel", "sms", "--from", "+1 555 BAD", "hi")
    assert bad_number.returncode == 2
    assert "not a possible phone number" in bad_number.stderr
    unknown = run_cli(url, "agent", "accept", "--tenant", "acme", "alice", "no-such-reservation")
    assert unknown.returncode == 2 and "unknown" in unknown.stderr
    wrong_tenant = run_cli(url, "outbox", "--tenant", "initech")
    assert wrong_tenant.returncode == 2 and "no tenant 'initech'" in wrong_tenant.stderr


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


def test_status_shows_waiting_contacts_and_agents(up: tuple[str, int]) -> None:
    url, _port = up
    assert run_cli(url, "agent", "login", "--tenant", "globex", "carol").returncode == 0
    added = run_cli(url, "contact", "add", "--tenant", "globex", "--channel", "sms", "--from", "+15557654321", "hi")
    assert added.returncode == 0, added.stderr
    # globex's demo agent carol is available with room, so the new contact is offered, not waiting
    status = wait_for(
        lambda: (out := run_cli(url, "status", "--tenant", "globex").stdout) and "sms 2/" in out and out,
        "carol holding both globex contacts",
    )
    assert "sales" in status and "carol" in status and "available" in status


def test_a_simulated_call_goes_through_the_menu_and_is_offered_to_an_agent(up: tuple[str, int]) -> None:
    url, port = up
    assert run_cli(url, "agent", "login", "--tenant", "acme", "alice").returncode == 0
    call = run_cli(
        url, "simulate", "call", "--tenant", "acme", "--from", "+15557770002", "--url", f"http://127.0.0.1:{port}",
        "--press", "1",
    )  # fmt: skip
    assert call.returncode == 0, call.stderr
    assert "Thank you for calling" in call.stdout
    offers = wait_for(
        lambda: [line for line in run_cli(url, "agent", "offers", "--tenant", "acme", "alice").stdout.splitlines()
                 if " voice " in line],
        "the call offered to alice",
    )  # fmt: skip
    assert len(offers) == 1


def test_commands_that_need_redis_say_so_without_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    for args in (["run", "routing"], ["agent", "offers", "--tenant", "acme", "alice"]):
        result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert "REDIS_URL" in result.stderr


def test_simulating_a_call_to_a_tenant_without_voice_numbers_is_refused(tmp_path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text('[[tenants]]\nid = "initech"\n[[tenants.queues]]\nid = "q"\n')
    env = {**os.environ, "TWILIO_SANDBOX_TOKEN": "t"}
    result = subprocess.run(
        [CLI, "--config", str(config), "simulate", "call", "--tenant", "initech", "--from", "+12015551234"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "tenant initech has no voice numbers" in result.stderr


def test_simulate_finds_the_web_process_of_up_without_port_exported(up: tuple[str, int]) -> None:
    url, _port = up
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "CONTACTROUTER_CONFIG")}
    result = subprocess.run(
        [CLI, "simulate", "sms", "--tenant", "acme", "--from", "+15557770003", "hello"],
        env={**env, "REDIS_URL": url}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "<Response" in result.stdout


def test_up_says_so_when_smtp_port_is_taken() -> None:
    taken = free_port()
    console: list[str] = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with running_up({"SMTP_PORT": str(taken), "SMTP_HOST": "127.0.0.1"}, console):
            smtp = wait_for(lambda: [line for line in console if line.lstrip().startswith("smtp:")], "the smtp line")
    assert f"SMTP_PORT {taken} is taken" in smtp[0], smtp
