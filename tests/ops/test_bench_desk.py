"""`python -m ops.bench desk` at a tiny size: agents logged in (through the form and by
session), one live socket each on a real web process, customer messages routed by a real
routing worker, and every message's notice on its own agent's socket. The report's figures
are checked for shape and sense, never against times."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from ops.bench._processes import ROOT, child_env

pytestmark = pytest.mark.e2e  # the web process and a routing worker, as operations start them

AGENTS, MESSAGES, FORM_LOGINS = 5, 12, 2


@pytest.fixture(scope="module")
def report(redis_server) -> dict:
    """One run for the module, on the tests' redis-server (emptied first: the bench wants it empty)."""
    redis.Redis.from_url(redis_server.url).flushall()
    command = [sys.executable, "-m", "ops.bench", "desk", "--json", "--redis-url", redis_server.url]
    command += ["--agents", str(AGENTS), "--messages", str(MESSAGES), "--rate", "40"]
    command += ["--form-logins", str(FORM_LOGINS), "--idle", "0.5", "--settle", "30"]
    done = subprocess.run(command, cwd=ROOT, env=child_env({}), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_message_reaches_its_agents_socket_once_and_no_other(report: dict) -> None:
    assert (report["agents"], report["messages"], report["received"]) == (AGENTS, MESSAGES, MESSAGES)
    assert report["delivery"] == {"elsewhere": 0, "twice": 0, "missing": 0, "sockets_closed": 0}
    assert report["web_log_errors"] == []


def test_some_agents_log_in_through_the_form_and_the_rest_by_session(report: dict) -> None:
    setup = report["setup"]
    assert (setup["form_logins"], setup["session_logins"]) == (FORM_LOGINS, AGENTS - FORM_LOGINS)
    assert setup["form_login_p50_ms"] > 0


def test_latencies_are_ordered_percentiles_after_the_message_was_stored(report: dict) -> None:
    for figures in (report, report["bare_reader"], report["ingest_to_feed"]):
        assert 0 <= figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert report["target_p99_ms"] == 500
    assert report["ratio"] == round(report["bare_reader"]["p99_ms"] / report["p99_ms"], 3)


def test_the_web_process_memory_and_cpu_are_reported_per_agent(report: dict) -> None:
    rss = report["web_rss_bytes"]
    assert 0 < rss["before_sockets"] and 0 < rss["sockets_open"] and 0 < rss["after_messages"]
    assert report["web_rss_bytes_per_agent"] == round((rss["sockets_open"] - rss["before_sockets"]) / AGENTS)
    assert report["web_cpu_s_per_agent"] >= 0 and report["web_cpu_us_per_message"] >= 0
    assert report["web_idle_cpu_percent"] >= 0
    assert set(report["cpu_percent"]) == {"web", "routing", "redis", "loadgen", "others"}


def test_the_time_spent_waiting_for_a_cpu_is_reported_for_each_party_and_the_machine(report: dict) -> None:
    waited = report["waited_for_cpu"]
    assert set(waited) == {"web_ms", "routing_ms", "loadgen_ms", "machine_pressure_percent"}
    assert all(value is None or value >= 0 for value in waited.values())
