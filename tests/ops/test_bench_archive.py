"""`python -m ops.bench archive` at a tiny size: every conversation closed, archived and
evicted, only customers and the tenant's configuration left in Redis, and the figures
in the report consistent with one another (never checked against a target)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.bench._processes import ROOT, child_env

pytestmark = pytest.mark.e2e  # its own redis-server and PostgreSQL, the product's code in one process

CONTACTS = 20


@pytest.fixture(scope="module")
def report(redis_server, postgres_server) -> dict:
    """One run for the module (the fixtures only say whether the servers can be had here)."""
    command = [sys.executable, "-m", "ops.bench", "archive", "--json", "--contacts", str(CONTACTS), "--agents", "2"]
    done = subprocess.run(command, cwd=ROOT, env=child_env({}), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_conversation_is_closed_archived_and_evicted(report: dict) -> None:
    assert (report["contacts"], report["closed"], report["evicted"]) == (CONTACTS, CONTACTS, CONTACTS)
    assert not {"conv:*", "conv:*:log", "msg:*", "res:*", "cust:*:convs", "seen:*"} & set(report["redis_keys_left"])
    assert "cust:*" in report["redis_keys_left"]  # a customer's record routes their next contact


def test_redis_holds_less_per_conversation_after_eviction_and_the_ratio_says_how_much(report: dict) -> None:
    for figures in (report["redis_bytes_per_closed_conversation"], report["key_bytes_per_closed_conversation"]):
        assert figures["before"] > figures["after"] >= figures["after_markers_expired"] > 0
    r = report["redis_bytes_per_closed_conversation"]
    assert report["ratio"] == pytest.approx(r["after"] / r["before"], abs=0.002)  # of the unrounded figures
    assert report["postgres_bytes_per_conversation"] > 0
