"""Erlang C staffing, checked against published figures.

The reference case is Call Centre Helper's worked example ("Erlang C Formula - Made
Simple With an Easy Worked Example", callcentrehelper.com/erlang-c-formula-example-121281.htm):
100 calls in 30 minutes, AHT 180 s, 80% answered within 20 s, maximum occupancy 85%,
shrinkage 30%. pyworkforce (rodrigo-arenas/pyworkforce, README "Queue systems") publishes
its result: 14 agents on the phones, 20 scheduled, service level 0.8883500191794669,
occupancy 0.7142857142857143, probability of waiting 0.1741319335950498.
"""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops import staffing
from router.app import cli


def test_the_published_worked_example_needs_14_agents_and_20_scheduled():
    result = staffing.agents_needed(100, 30 * 60, 180, target_sl=0.8, target_s=20, max_occupancy=0.85, shrinkage=0.3)
    assert result.traffic_erlangs == pytest.approx(10.0)
    assert (result.agents, result.scheduled) == (14, 20)
    assert result.service_level == pytest.approx(0.8883500191794669, abs=1e-12)
    assert result.probability_wait == pytest.approx(0.1741319335950498, abs=1e-12)
    assert result.occupancy == pytest.approx(0.7142857142857143)


def test_thirteen_agents_fall_just_short_of_80_in_20():
    # Why the example needs 14: with 13 the service level is 79.6%.
    assert staffing.service_level(13, 10.0, 180, 20) == pytest.approx(0.7956, abs=1e-4)
    assert staffing.service_level(14, 10.0, 180, 20) >= 0.8


def test_eleven_agents_make_68_percent_of_callers_wait():
    # The worked example's first step (N = A + 1 = 11): Pw = 68.21%.
    assert staffing.erlang_c(11, 10.0) == pytest.approx(0.6821, abs=1e-4)


def test_average_speed_of_answer_is_the_wait_probability_times_aht_over_spare_agents():
    asa = staffing.average_speed_of_answer(14, 10.0, 180)
    assert asa == pytest.approx(0.1741319335950498 * 180 / 4)


def test_a_maximum_occupancy_adds_agents_the_service_level_alone_would_not():
    # 300 calls / 30 min at 180 s = 30 Erlangs: the 80/20 target is met at 90% occupancy or so,
    # an occupancy cap of 80% needs at least 30 / 0.8 = 37.5 -> 38 agents.
    loose = staffing.agents_needed(300, 1800, 180, target_sl=0.8, target_s=20)
    capped = staffing.agents_needed(300, 1800, 180, target_sl=0.8, target_s=20, max_occupancy=0.8)
    assert loose.occupancy > 0.8
    assert capped.agents == 38 and capped.occupancy <= 0.8


def test_shrinkage_rounds_scheduled_agents_up():
    assert staffing.scheduled(14, 0.3) == 20  # 14 / 0.7 = 20 exactly: no extra agent for rounding noise
    assert staffing.scheduled(13, 0.3) == 19
    assert staffing.scheduled(0, 0.3) == 0


def test_no_traffic_needs_nobody():
    result = staffing.agents_needed(0, 1800, 180, target_sl=0.8, target_s=20, shrinkage=0.3)
    assert (result.agents, result.scheduled, result.service_level) == (0, 0, 1.0)


def test_too_few_agents_never_catch_up():
    assert staffing.erlang_c(10, 10.0) == 1.0
    assert staffing.service_level(9, 10.0, 180, 20) == 0.0
    assert staffing.average_speed_of_answer(10, 10.0, 180) == math.inf


def test_large_centres_stay_exact_where_factorials_would_overflow():
    # 480 Erlangs: 480**500 / 500! overflows a float; the recursion does not.
    result = staffing.agents_needed(4800, 1800, 180, target_sl=0.9, target_s=15)
    assert 480 < result.agents < 520
    assert 0.9 <= result.service_level < 1
    assert 0 < result.probability_wait < 1


@pytest.mark.parametrize(
    ("field", "value"), [("target_sl", 1.0), ("target_sl", 0.0), ("max_occupancy", 0.0), ("shrinkage", 1.0)]
)
def test_impossible_targets_are_refused(field, value):
    options = {"target_sl": 0.8, "target_s": 20, "max_occupancy": 1.0, "shrinkage": 0.0, field: value}
    with pytest.raises(ValueError):
        staffing.agents_needed(100, 1800, 180, **options)


def _erlang_c_by_factorials(n: int, a: float) -> float:
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0.05, max_value=0.99))
def test_the_recursion_agrees_with_the_textbook_formula(agents, load_per_agent):
    traffic = agents * load_per_agent
    assert staffing.erlang_c(agents, traffic) == pytest.approx(_erlang_c_by_factorials(agents, traffic), rel=1e-9)


@given(st.floats(min_value=0.5, max_value=200), st.floats(min_value=0.5, max_value=0.95))
def test_the_answer_is_the_fewest_agents_that_meet_the_target(traffic, target):
    result = staffing.agents_needed(traffic * 10, 1800, 180, target_sl=target, target_s=20)
    assert result.service_level >= target
    fewer = result.agents - 1
    assert fewer <= traffic or staffing.service_level(fewer, traffic, 180, 20) < target


def test_the_staffing_command_works_from_given_figures_without_a_store(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    argv = "staffing --calls-per-interval 100 --interval-minutes 30 --aht 180 --target-sl 80 --target-seconds 20"
    assert cli.main([*argv.split(), "--max-occupancy", "85", "--shrinkage", "30"]) == 0
    out = capsys.readouterr().out
    assert "traffic 10.00 Erlangs" in out
    assert "agents needed 14, to schedule 20" in out
    assert "    14          88.8%   17.4%      8s      71.4%  <-" in out


def test_the_staffing_command_refuses_missing_figures(capsys):
    assert cli.main(["staffing", "--aht", "180"]) == 2
    assert "needs --calls-per-interval" in capsys.readouterr().err
