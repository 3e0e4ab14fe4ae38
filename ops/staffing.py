"""Staffing with Erlang C: how many agents a service-level target needs.

Erlang C models a queue (M/M/N): contacts arrive at random (Poisson), handle
times are exponential, nobody abandons. It over-staffs a little where callers
do abandon, which is why it stays the planning standard: it errs on the side
of the customer. Everything here is computed through the Erlang B recursion,
never factorials or powers, so 500 agents and 480 Erlangs are as exact as 10.

Two sources of figures: given ones (`contactrouter staffing --calls-per-interval
...`), or measured ones from a tenant's events stream, interval by interval
(`contactrouter staffing measured ...`, see `measured`).
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from ops import reports
from router.config import Tenant
from router.errors import ContactRouterError
from router.store import Store


class StaffingError(ContactRouterError, ValueError):
    """Inputs the Erlang C model cannot work with (a target above 100%, no interval)."""


class Staffing(msgspec.Struct, frozen=True, kw_only=True):
    """What a number of agents achieves for one interval's traffic."""

    contacts: float  # arriving in the interval
    traffic_erlangs: float
    agents: int  # productive agents needed (on the phones)
    scheduled: int  # agents to schedule, after shrinkage
    service_level: float  # fraction answered within the target, 0..1
    probability_wait: float  # fraction that waits at all (Erlang C)
    asa_s: float  # average speed of answer
    occupancy: float  # fraction of the agents' time spent handling, 0..1


def traffic(contacts: float, interval_s: float, aht_s: float) -> float:
    """Offered load in Erlangs: the hours of work arriving per hour."""
    if interval_s <= 0:
        raise StaffingError("the interval must be longer than 0 seconds")
    return contacts * aht_s / interval_s


def erlang_b(agents: int, traffic_erlangs: float) -> float:
    """Blocking probability, by the recursion B(k) = A B(k-1) / (k + A B(k-1))."""
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = traffic_erlangs * blocking / (k + traffic_erlangs * blocking)
    return blocking


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """Probability that a contact waits; 1 when the agents cannot keep up (N <= A)."""
    if traffic_erlangs <= 0:
        return 0.0
    if agents <= traffic_erlangs:
        return 1.0
    blocking = erlang_b(agents, traffic_erlangs)
    return agents * blocking / (agents - traffic_erlangs * (1 - blocking))


def service_level(agents: int, traffic_erlangs: float, aht_s: float, target_s: float) -> float:
    """Fraction of contacts answered within target_s."""
    if traffic_erlangs <= 0:
        return 1.0
    if agents <= traffic_erlangs:
        return 0.0
    waits = erlang_c(agents, traffic_erlangs)
    return max(0.0, 1 - waits * math.exp(-(agents - traffic_erlangs) * target_s / aht_s))


def average_speed_of_answer(agents: int, traffic_erlangs: float, aht_s: float) -> float:
    """Mean wait in seconds over all contacts (infinite when N <= A)."""
    if traffic_erlangs <= 0:
        return 0.0
    if agents <= traffic_erlangs:
        return math.inf
    return erlang_c(agents, traffic_erlangs) * aht_s / (agents - traffic_erlangs)


def occupancy(agents: int, traffic_erlangs: float) -> float:
    return min(1.0, traffic_erlangs / agents) if agents else 0.0


def scheduled(agents: int, shrinkage: float) -> int:
    """Agents to schedule so that `agents` are on the phones after breaks, training, absence."""
    return math.ceil(agents / (1 - shrinkage) - 1e-9) if agents else 0


def agents_needed(
    contacts: float,
    interval_s: float,
    aht_s: float,
    *,
    target_sl: float,
    target_s: float,
    max_occupancy: float = 1.0,
    shrinkage: float = 0.0,
) -> Staffing:
    """The fewest agents that answer target_sl of contacts within target_s while
    nobody is busier than max_occupancy; fractions are 0..1."""
    if not 0 < target_sl < 1:
        raise StaffingError("the service-level target must be above 0% and below 100%")
    if not 0 < max_occupancy <= 1:
        raise StaffingError("the maximum occupancy must be above 0% and at most 100%")
    if not 0 <= shrinkage < 1:
        raise StaffingError("shrinkage must be at least 0% and below 100%")
    if contacts < 0 or aht_s < 0 or target_s < 0:
        raise StaffingError("contacts, handle time and target time cannot be negative")
    load = traffic(contacts, interval_s, aht_s)
    if load == 0:
        nobody = dict(agents=0, scheduled=0, service_level=1.0, probability_wait=0.0, asa_s=0.0, occupancy=0.0)
        return Staffing(contacts=contacts, traffic_erlangs=0.0, **nobody)
    # Start where the occupancy cap allows and the queue is stable; the service
    # level only rises with every agent added, so the first that meets it is the answer.
    # Erlang B is carried from one agent count to the next: each step costs O(1).
    agents = max(math.floor(load) + 1, math.ceil(load / max_occupancy - 1e-9))
    blocking = erlang_b(agents, load)
    while True:
        waits = agents * blocking / (agents - load * (1 - blocking))
        achieved = max(0.0, 1 - waits * math.exp(-(agents - load) * target_s / aht_s))
        if achieved >= target_sl:
            break
        agents += 1
        blocking = load * blocking / (agents + load * blocking)
    return Staffing(
        contacts=contacts,
        traffic_erlangs=load,
        agents=agents,
        scheduled=scheduled(agents, shrinkage),
        service_level=achieved,
        probability_wait=waits,
        asa_s=average_speed_of_answer(agents, load, aht_s),
        occupancy=occupancy(agents, load),
    )


class IntervalStaffing(msgspec.Struct, frozen=True, kw_only=True):
    start: dt.datetime  # in the tenant's time zone
    staffing: Staffing


class MeasuredStaffing(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    queue: str
    day: dt.date
    aht_s: float  # measured over the day (or given, where nothing was handled)
    handled: int  # contacts the AHT was measured on
    intervals: list[IntervalStaffing]


async def measured(
    store: Store,
    tenant: Tenant,
    queue: str,
    day: dt.date,
    *,
    interval_minutes: int = 30,
    target_sl: float | None = None,
    target_s: float | None = None,
    max_occupancy: float = 1.0,
    shrinkage: float = 0.0,
    aht_s: float | None = None,
) -> MeasuredStaffing:
    """Agents per interval of a day from the contacts the queue was offered then.

    Arrivals are counted per interval; the handle time is the day's average for
    the queue (one interval's few contacts make a poor average), or aht_s when
    given. The target defaults to the queue's own service level.
    """
    config = tenant.queue(queue)  # KeyError for an unknown queue
    target_sl = config.sla.percent / 100 if target_sl is None else target_sl
    target_s = config.sla.seconds if target_s is None else target_s
    if not 0 < interval_minutes <= 24 * 60 or (24 * 60) % interval_minutes:
        raise StaffingError("the interval must divide a day evenly (e.g. 15, 30 or 60 minutes)")
    traffic_by_interval = await reports.arrivals(store, tenant, queue, day, interval_minutes)
    if aht_s is None:
        aht_s, handled = traffic_by_interval.aht_s, traffic_by_interval.handled
        if not handled:
            raise StaffingError(f"nothing was handled in queue {queue} on {day}: give the handle time (--aht)")
    else:
        handled = traffic_by_interval.handled
    intervals = [
        IntervalStaffing(
            start=start,
            staffing=agents_needed(
                count,
                interval_minutes * 60,
                aht_s,
                target_sl=target_sl,
                target_s=target_s,
                max_occupancy=max_occupancy,
                shrinkage=shrinkage,
            ),
        )
        for start, count in traffic_by_interval.counts
    ]
    return MeasuredStaffing(tenant=tenant.id, queue=queue, day=day, aht_s=aht_s, handled=handled, intervals=intervals)
