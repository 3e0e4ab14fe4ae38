"""`python -m ops.bench dialer`: the report's shape, and what the simulation must show
(predictive keeps agents busier than progressive and preview, within the abandon limit).
Checked on a small floor so it runs in a moment; nothing is timed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.bench import dialer
from ops.bench._processes import ROOT, child_env
from router.campaigns.dialing import ABANDON_LIMIT, DialMode


@pytest.fixture(scope="module")
def report() -> dict:
    return dialer.run(agents=20, hours=2, seed=24, answer_rate=0.3, machine_rate=0.15)


def test_json_names_occupancy_and_abandon_rate_for_every_mode() -> None:
    command = [sys.executable, "-m", "ops.bench", "dialer", "--json", "--agents", "5", "--hours", "1"]
    done = subprocess.run(command, cwd=ROOT, env=child_env({}), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    modes = json.loads(done.stdout)["modes"]
    assert set(modes) == {"preview", "progressive", "predictive"}
    for figures in modes.values():
        assert 0.0 < figures["occupancy"] <= 1.0
        assert 0.0 <= figures["abandon_rate"] <= 1.0


def test_predictive_keeps_agents_busiest_within_the_abandon_limit(report: dict) -> None:
    modes = report["modes"]
    assert modes["predictive"]["occupancy"] > modes["progressive"]["occupancy"] > modes["preview"]["occupancy"]
    assert modes["predictive"]["abandon_rate"] <= ABANDON_LIMIT


def test_only_predictive_abandons_and_every_answer_is_connected_or_abandoned(report: dict) -> None:
    for name, figures in report["modes"].items():
        assert figures["connects"] + figures["abandoned"] == figures["answered"]
        if name != "predictive":
            assert figures["abandoned"] == 0


def test_the_same_seed_gives_the_same_report() -> None:
    again = dialer.simulate(DialMode.PREDICTIVE, 10, 1, dialer.Customers(7, 0.3, 0.15))
    assert again == dialer.simulate(DialMode.PREDICTIVE, 10, 1, dialer.Customers(7, 0.3, 0.15))


def test_a_rate_outside_0_and_1_is_refused() -> None:
    with pytest.raises(SystemExit):
        dialer.main(["--answer-rate", "1.5"])
