"""How many campaign calls to place now, for agents on the line (issue 24).

Pure: the dialler passes in what it sees on the floor and what it has measured, and gets
back how many calls to place. No clock, no store, so the same decision drives the campaigns
worker and the `python -m ops.bench dialer` simulation.

- preview: the system places nothing; an agent reads the record and presses Dial (or Skip).
- progressive: one call per free agent, counting the calls already ringing for them, so a
  person who answers always finds an agent (no abandons, but agents wait through the rings).
- predictive: dials ahead of the free agents. A call is answered by a person with the
  measured answer rate, and an agent on a call is expected to be free before the answer
  comes with the chance the measured ring and handle times give. The dialler places the
  most calls whose expected abandons (a person answers, no agent is free) stay within
  `AIM` of the expected answers, or within what is left under the limit when the
  campaign's rolling 30-day abandon rate is closer to it than that. At the limit
  (`ABANDON_LIMIT` of answered calls: the FTC's Telemarketing Sales Rule, 16 CFR
  310.4(b)(4)(i), per campaign over 30 days) any call ahead would take the rate over it,
  so it falls back to progressive, as it does while it is still learning the answer rate.
"""

from __future__ import annotations

import enum
import math

import msgspec

# At most 3 % of the calls a person answers may be abandoned, per campaign, over 30 days.
ABANDON_LIMIT = 0.03
# What one round may expect to abandon, as a share of what it expects a person to answer:
# under the limit, so chance alone (a run of answers) seldom carries the 30 days over it.
AIM = 0.02
# Outcomes measured before predictive trusts the answer rate; until then it is progressive.
MIN_OUTCOMES = 30
# Never more than this many calls ringing per agent on the campaign, whatever the rates say:
# a bad measurement (a burst of unanswered calls) must not flood the trunk.
MAX_RATIO = 5.0


class DialMode(enum.StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"


class Floor(msgspec.Struct, frozen=True):
    """The campaign's agents and calls at the moment of deciding."""

    free_agents: int  # in the session, waiting for a call
    busy_agents: int  # in the session, on a call or in wrap-up
    in_flight: int  # calls placed and not yet answered, detected a machine or given up


class Measures(msgspec.Struct, frozen=True):
    """What the campaign has measured. `outcomes` and `answered` give the answer rate (a
    person, not a machine, per call that rang out); the 30-day pair is the abandon rate."""

    outcomes: int = 0
    answered: int = 0
    ring_s: float = 15.0  # mean seconds from dial to a person's answer
    handle_s: float = 180.0  # mean agent seconds per connected call, talk and wrap-up
    answered_30d: int = 0
    abandoned_30d: int = 0

    @property
    def answer_rate(self) -> float:
        return self.answered / self.outcomes if self.outcomes else 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandoned_30d / self.answered_30d if self.answered_30d else 0.0


class Pace(msgspec.Struct, frozen=True):
    """The decision: `calls` to place now, the mode that decided it (predictive may fall back
    to progressive), why, and the abandons the round expects (for the campaign page)."""

    calls: int
    mode: DialMode
    reason: str
    expected_abandons: float = 0.0


def pace(mode: DialMode, floor: Floor, measures: Measures, *, limit: float = ABANDON_LIMIT) -> Pace:
    """How many calls to place now in `mode`."""
    if min(floor.free_agents, floor.busy_agents, floor.in_flight) < 0:
        raise ValueError(f"a floor count cannot be negative: {floor}")
    if mode is DialMode.PREVIEW:
        return Pace(0, mode, "agents dial from the preview")
    progressive = max(0, floor.free_agents - floor.in_flight)
    if mode is DialMode.PROGRESSIVE:
        return Pace(progressive, mode, "one call per free agent")
    if measures.outcomes < MIN_OUTCOMES or measures.answered == 0:
        return Pace(progressive, DialMode.PROGRESSIVE, "learning the answer rate")
    if measures.answered_30d and measures.abandon_rate >= limit:
        return Pace(progressive, DialMode.PROGRESSIVE, "the 30-day abandon rate is at the limit")
    p = min(1.0, measures.answer_rate)
    # An agent on a call is free before an answer arrives with this chance (handle times
    # taken as exponential: the chance that one ends within the mean ring time).
    q = 1.0 - math.exp(-measures.ring_s / measures.handle_s) if measures.handle_s > 0 else 1.0
    odds = _Round(p, floor.free_agents, _freed_shortfall(floor.busy_agents, q))
    # Dial ahead less as the 30-day rate nears the limit, so the headroom is never overspent.
    aim = min(AIM, limit - measures.abandon_rate)
    agents = floor.free_agents + floor.busy_agents
    ceiling = max(progressive, math.floor(agents * MAX_RATIO) - floor.in_flight)
    best, best_abandons = progressive, odds.abandons(floor.in_flight + progressive)
    lo, hi = progressive + 1, ceiling
    while lo <= hi:  # the most calls whose expected abandons are within the aim of expected answers
        mid = (lo + hi) // 2
        abandons = odds.abandons(floor.in_flight + mid)
        if abandons <= aim * (floor.in_flight + mid) * p:
            best, best_abandons, lo = mid, abandons, mid + 1
        else:
            hi = mid - 1
    return Pace(best, DialMode.PREDICTIVE, f"answer rate {p:.0%}, {best - progressive} ahead", best_abandons)


class _Round:
    """Expected abandons when `n` calls ring: E[max(0, X - free - Y)] with X ~ Binomial(n, p)
    the people who answer and Y ~ Binomial(busy, q) the agents freed meanwhile, exactly."""

    def __init__(self, p: float, free: int, shortfall: list[float]) -> None:
        self.p, self.free, self.shortfall = p, free, shortfall

    def abandons(self, n: int) -> float:
        total, pmf = 0.0, _binomial(n, self.p)
        for answered in range(self.free + 1, n + 1):
            total += pmf[answered] * self._short(answered - self.free)
        return total

    def _short(self, k: int) -> float:
        """E[max(0, k - Y)]: beyond the table every freed agent is already counted."""
        table = self.shortfall
        return table[k] if k < len(table) else table[-1] + (k - len(table) + 1)


def _freed_shortfall(busy: int, q: float) -> list[float]:
    """g[k] = E[max(0, k - Y)] for k = 0 .. busy + 1, Y ~ Binomial(busy, q)."""
    pmf = _binomial(busy, q)
    g, below = [0.0], 0.0
    for k in range(busy + 1):
        below += pmf[k]  # P(Y <= k)
        g.append(g[-1] + below)
    return g


def _binomial(n: int, p: float) -> list[float]:
    """P(X = k) for k = 0 .. n, by the ratio of successive terms (no huge binomials)."""
    if p <= 0.0:
        return [1.0] + [0.0] * n
    if p >= 1.0:
        return [0.0] * n + [1.0]
    pmf = [0.0] * (n + 1)
    pmf[0] = (1.0 - p) ** n
    odds = p / (1.0 - p)
    if pmf[0] == 0.0:  # underflow for large n: fall back to logs
        return [math.exp(_log_comb(n, k) + k * math.log(p) + (n - k) * math.log1p(-p)) for k in range(n + 1)]
    for k in range(n):
        pmf[k + 1] = pmf[k] * (n - k) / (k + 1) * odds
    return pmf


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
