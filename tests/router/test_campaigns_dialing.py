"""The dialler's pacing decision (router/campaigns/dialing.py): how many calls each mode
places for the agents it has, and how predictive holds the abandon limit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.campaigns import dialing
from router.campaigns.dialing import DialMode, Floor, Measures, pace

LEARNT = Measures(outcomes=1000, answered=300, ring_s=15.0, handle_s=180.0, answered_30d=300, abandoned_30d=0)


def test_preview_places_nothing_itself_the_agents_dial() -> None:
    decided = pace(DialMode.PREVIEW, Floor(free_agents=10, busy_agents=0, in_flight=0), LEARNT)
    assert (decided.calls, decided.mode) == (0, DialMode.PREVIEW)


def test_progressive_places_one_call_per_free_agent_counting_those_already_ringing() -> None:
    assert pace(DialMode.PROGRESSIVE, Floor(5, 3, 0), LEARNT).calls == 5
    assert pace(DialMode.PROGRESSIVE, Floor(5, 3, 2), LEARNT).calls == 3
    assert pace(DialMode.PROGRESSIVE, Floor(2, 3, 4), LEARNT).calls == 0


def test_predictive_dials_ahead_of_free_agents_when_few_people_answer() -> None:
    decided = pace(DialMode.PREDICTIVE, Floor(10, 40, 0), LEARNT)
    assert decided.mode is DialMode.PREDICTIVE
    assert decided.calls > 10
    # what it expects to abandon is within the aim of what it expects people to answer
    assert decided.expected_abandons <= dialing.AIM * decided.calls * 0.3


def test_predictive_ratio_adapts_to_the_answer_rate() -> None:
    def calls(answered: int) -> int:
        measured = Measures(outcomes=1000, answered=answered, answered_30d=answered)
        return pace(DialMode.PREDICTIVE, Floor(10, 40, 0), measured).calls

    assert calls(100) > calls(300) > calls(700) >= 10


def test_predictive_ratio_adapts_to_handle_time() -> None:
    def calls(handle_s: float) -> int:
        measured = Measures(outcomes=1000, answered=300, handle_s=handle_s, answered_30d=300)
        return pace(DialMode.PREDICTIVE, Floor(5, 45, 0), measured).calls

    # short calls free busy agents within the ring time, so more can be dialled ahead
    assert calls(60.0) > calls(180.0) > calls(900.0)


def test_predictive_counts_calls_already_ringing() -> None:
    idle = pace(DialMode.PREDICTIVE, Floor(10, 40, 0), LEARNT).calls
    assert pace(DialMode.PREDICTIVE, Floor(10, 40, idle), LEARNT).calls == 0


def test_predictive_is_progressive_while_it_learns_the_answer_rate() -> None:
    decided = pace(DialMode.PREDICTIVE, Floor(10, 0, 0), Measures(outcomes=dialing.MIN_OUTCOMES - 1, answered=5))
    assert (decided.calls, decided.mode, decided.reason) == (10, DialMode.PROGRESSIVE, "learning the answer rate")


def test_predictive_falls_back_to_progressive_at_the_30_day_abandon_limit() -> None:
    at_limit = Measures(outcomes=1000, answered=300, answered_30d=1000, abandoned_30d=30)
    decided = pace(DialMode.PREDICTIVE, Floor(10, 40, 0), at_limit)
    assert (decided.calls, decided.mode) == (10, DialMode.PROGRESSIVE)
    assert "abandon" in decided.reason


def test_predictive_dials_ahead_less_as_the_30_day_rate_nears_the_limit() -> None:
    def calls(abandoned: int) -> int:
        measured = Measures(outcomes=1000, answered=300, answered_30d=1000, abandoned_30d=abandoned)
        return pace(DialMode.PREDICTIVE, Floor(10, 40, 0), measured).calls

    assert calls(0) == calls(10) > calls(25) > calls(29) >= 10


def test_predictive_never_rings_more_than_the_ratio_cap_per_agent() -> None:
    barely = Measures(outcomes=100_000, answered=31, answered_30d=31)
    decided = pace(DialMode.PREDICTIVE, Floor(4, 0, 0), barely)
    assert decided.calls <= 4 * dialing.MAX_RATIO


def test_a_negative_count_is_refused_with_the_floor_it_got() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        pace(DialMode.PROGRESSIVE, Floor(-1, 0, 0), LEARNT)


@given(
    free=st.integers(0, 60),
    busy=st.integers(0, 60),
    in_flight=st.integers(0, 200),
    answered=st.integers(1, 1000),
    handle=st.floats(10.0, 3600.0),
)
def test_predictive_never_places_fewer_calls_than_progressive(
    free: int, busy: int, in_flight: int, answered: int, handle: float
) -> None:
    measured = Measures(outcomes=1000, answered=answered, handle_s=handle, answered_30d=answered)
    progressive = pace(DialMode.PROGRESSIVE, Floor(free, busy, in_flight), measured).calls
    predictive = pace(DialMode.PREDICTIVE, Floor(free, busy, in_flight), measured)
    assert progressive <= predictive.calls <= max(progressive, (free + busy) * dialing.MAX_RATIO)


def test_expected_abandons_match_a_seeded_count_of_rounds() -> None:
    """The exact expectation the decision uses agrees with counting many simulated rounds."""
    p, free, busy, q, n = 0.3, 3, 10, 0.2, 25
    expected = dialing._Round(p, free, dialing._freed_shortfall(busy, q)).abandons(n)
    rng = random.Random(24)
    rounds = 40_000
    total = 0
    for _ in range(rounds):
        people = sum(rng.random() < p for _ in range(n))
        freed = sum(rng.random() < q for _ in range(busy))
        total += max(0, people - free - freed)
    assert total / rounds == pytest.approx(expected, rel=0.05)
