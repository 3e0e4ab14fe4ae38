"""`python -m ops.bench retention` at a tiny size: the compressed clock evicts each day's
conversations once they leave the hot window, and the report has the figures the issue
names, one memory figure per simulated day (never checked against a target)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.bench._processes import ROOT, child_env
from ops.bench.retention import Clock, percentile

pytestmark = pytest.mark.e2e  # its own redis-server and PostgreSQL, the product's code in one process

DAYS, PER_DAY = 9, 4


@pytest.fixture(scope="module")
def report(redis_server, postgres_server) -> dict:
    command = [sys.executable, "-m", "ops.bench", "retention", "--json", "--days", str(DAYS)]
    command += ["--contacts-per-day", str(PER_DAY), "--agents", "2"]
    done = subprocess.run(command, cwd=ROOT, env=child_env({}), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_report_has_the_figures_the_issue_names(report: dict) -> None:
    assert report["hot_window_days"] == 7
    assert len(report["redis_used_memory_by_day"]) == DAYS
    assert all(used > 0 for used in report["redis_used_memory_by_day"])
    assert report["postgres_bytes_per_conversation"] > 0
    assert report["archive_lag_max_s"] == max(report["archive_lag_by_day_s"]) >= 0
    assert report["search_p99_ms"] >= report["search_p50_ms"] > 0


def test_conversations_leave_redis_once_their_simulated_day_is_past_the_hot_window(report: dict) -> None:
    assert report["closed"] == DAYS * PER_DAY
    assert report["evicted"] == (DAYS - 7) * PER_DAY  # days 1 and 2, on days 8 and 9


def test_the_clock_ends_the_last_day_at_real_time_and_percentiles_pick_from_the_top() -> None:
    clock = Clock(3)
    for _ in range(3):
        clock.next_day()
    assert clock.offset_ms == 0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 100.0
    assert percentile([5.0], 0.99) == 5.0
