"""Dialler benchmark: agent occupancy and abandon rate per dial mode, simulated.

    python -m ops.bench dialer [--agents 50] [--hours 8] [--seed 24] [--answer-rate 0.3] [--json]

It simulates a collections shift: `--agents` agents on one campaign for `--hours`, with
seeded ring, answer, machine and handle times, and lets the pacing decision of the
campaigns worker (`router.campaigns.dialing.pace`) place the calls in each mode: preview
(each agent reads the record, then dials one call and waits for it), progressive (one call
per free agent) and predictive (ahead of the free agents, within the abandon limit). A
person who answers when no agent is free is abandoned (in the product: the tenant's abandon
message, played at once). The same seed gives every mode the same customers, in order.

Occupancy is the agents' time on connected calls and their wrap-up, per agent-hour logged
in; the abandon rate is abandoned per call a person answered. This is a simulation of the
pacing decision, not a timing: nothing asserts on it, and it needs no Redis.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random

from ops.bench._args import positive
from router.campaigns.dialing import DialMode, Floor, Measures, pace


class Customers:
    """The seeded outcome of each successive call: the same list for every mode."""

    def __init__(self, seed: int, answer_rate: float, machine_rate: float) -> None:
        self.rng = random.Random(seed)
        self.timing = random.Random(seed + 1)  # agents' preview times, apart so customers stay the same
        self.answer_rate, self.machine_rate = answer_rate, machine_rate
        self.drawn: list[tuple[str, float, float]] = []

    def call(self, i: int) -> tuple[str, float, float]:
        """(outcome, seconds until it is known, agent handle seconds if a person answers)."""
        while len(self.drawn) <= i:
            r = self.rng
            u = r.random()
            handle = r.gammavariate(3.0, 50.0) + r.uniform(15.0, 45.0)  # talk ~150 s, wrap-up 15-45 s
            if u < self.answer_rate:
                self.drawn.append(("person", r.uniform(5.0, 25.0), handle))
            elif u < self.answer_rate + self.machine_rate:
                self.drawn.append(("machine", r.uniform(5.0, 25.0) + 3.0, 0.0))  # AMD takes ~3 s
            else:
                self.drawn.append(("no_answer", 30.0, 0.0))
        return self.drawn[i]


def simulate(mode: DialMode, agents: int, hours: float, customers: Customers, preview_s: float = 20.0) -> dict:
    shift = hours * 3600.0
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, agent or call)
    seq = 0
    free: set[int] = set(range(agents))
    waiting: dict[int, int] = {}  # call -> the agent it was dialled for (preview)
    in_flight = 0
    handled = 0.0
    dials = connects = answered = abandoned = outcomes = 0
    ring_total = handle_total = 0.0

    def push(t: float, kind: str, who: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, who))

    def dial(t: float, agent: int | None = None) -> None:
        nonlocal dials, in_flight
        outcome, after, _ = customers.call(dials)
        if agent is not None:
            waiting[dials] = agent
        push(t + after, outcome, dials)
        dials += 1
        in_flight += 1

    def connect(t: float, agent: int, handle: float) -> None:
        nonlocal connects, handled, handle_total
        connects += 1
        handle_total += handle
        handled += min(t + handle, shift) - t
        push(t + handle, "free", agent)

    if mode is DialMode.PREVIEW:
        for a in range(agents):
            push(customers.timing.uniform(0, preview_s), "previewed", a)
        free.clear()
    now = 0.0
    while True:
        if mode is not DialMode.PREVIEW and now < shift:
            decided = pace(
                mode,
                Floor(len(free), agents - len(free), in_flight),
                Measures(
                    outcomes, answered, ring_total / answered if answered else 15.0,
                    handle_total / connects if connects else 180.0, answered, abandoned,
                ),
            )
            for _ in range(decided.calls):
                dial(now)
        if not events:
            break
        now, _, kind, who = heapq.heappop(events)
        if kind == "previewed":
            if now < shift:
                dial(now, who)
            continue
        if kind == "free":
            if mode is DialMode.PREVIEW:
                push(now + customers.timing.uniform(0.5, 1.5) * preview_s, "previewed", who)
            else:
                free.add(who)
            continue
        in_flight -= 1
        outcomes += 1
        outcome, after, handle = customers.call(who)
        agent = waiting.pop(who, None)
        if outcome != "person":
            if agent is not None:
                push(now, "free", agent)
            continue
        answered += 1
        ring_total += after
        if agent is None and free:
            agent = free.pop()
        if agent is None:
            abandoned += 1
        else:
            connect(now, agent, handle)
    return {
        "occupancy": round(handled / (agents * shift), 4),
        "abandon_rate": round(abandoned / answered, 4) if answered else 0.0,
        "dials": dials,
        "answered": answered,
        "connects": connects,
        "abandoned": abandoned,
    }


def run(agents: int, hours: float, seed: int, answer_rate: float, machine_rate: float) -> dict:
    modes = {}
    for mode in DialMode:
        modes[mode.value] = simulate(mode, agents, hours, Customers(seed, answer_rate, machine_rate))
    return {
        "agents": agents,
        "hours": hours,
        "seed": seed,
        "answer_rate": answer_rate,
        "machine_rate": machine_rate,
        "modes": modes,
    }


def render(report: dict) -> str:
    lines = [
        f"{report['agents']} agents, {report['hours']} h, seed {report['seed']}, "
        f"people answer {report['answer_rate']:.0%}, machines {report['machine_rate']:.0%} of calls",
        f"{'mode':<12} {'occupancy':>9} {'abandon':>8} {'dials':>7} {'answered':>8} {'connects':>8} {'abandoned':>9}",
    ]
    for name, m in report["modes"].items():
        lines.append(
            f"{name:<12} {m['occupancy']:>9.1%} {m['abandon_rate']:>8.2%} {m['dials']:>7} "
            f"{m['answered']:>8} {m['connects']:>8} {m['abandoned']:>9}"
        )
    return "\n".join(lines)


def rate(value: str) -> float:
    """A share between 0 and 1 (argparse type)."""
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a number between 0 and 1") from None
    if not 0.0 < share < 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return share


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench dialer", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=positive, default=50)
    p.add_argument("--hours", type=positive, default=8)
    p.add_argument("--seed", type=int, default=24)
    p.add_argument("--answer-rate", type=rate, default=0.3, help="share of calls a person answers")
    p.add_argument("--machine-rate", type=rate, default=0.15, help="share of calls a machine answers")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    opts = p.parse_args(argv)
    if opts.answer_rate + opts.machine_rate >= 1.0:
        p.error("--answer-rate and --machine-rate must leave some calls unanswered")
    report = run(opts.agents, opts.hours, opts.seed, opts.answer_rate, opts.machine_rate)
    print(json.dumps(report, indent=2) if opts.json else render(report))
    return 0
