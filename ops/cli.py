"""Operators' commands: `report`, `staffing` and `health`.

contactrouter report --tenant T --period day|week|month|quarter [--date D] [--by queue|agent] [--csv FILE]
contactrouter report --tenant T --period range --date FIRST --until LAST    any span of days
contactrouter report rollup --tenant T [--from D] [--to D]    keep days' figures for good (backfill)
contactrouter staffing --calls-per-interval 100 --interval-minutes 30 --aht 180 --target-sl 80 --target-seconds 20
contactrouter staffing measured --tenant T --queue Q --date D
contactrouter health [--max-pending N] [--max-lag N]     exit status 0 when ready, 1 when not
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from ops import health, reports, rollups, satisfaction, staffing
from router import events
from router.config import Deployment
from router.errors import ContactRouterError
from router.store import Store


class OpsCommandError(ContactRouterError):
    """Shown to the operator as one line, exit status 2."""


def NEEDS_STORE(a: argparse.Namespace) -> bool:  # the name router/app/cli.py asks modules for
    """Staffing from given figures needs no Redis; everything else reads the store."""
    return not (a.command == "staffing" and a.source is None)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _percent(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError(f"a percentage from 0 to 100: {value!r}")
    return number


def _targets(parser: argparse.ArgumentParser, *, measured: bool) -> None:
    default = " (default: the queue's service level)" if measured else ""
    parser.add_argument("--interval-minutes", type=int, default=30)
    parser.add_argument("--target-sl", type=_percent, default=None if measured else 80.0, help="percent" + default)
    parser.add_argument("--target-seconds", type=float, default=None if measured else 20.0, help="answered within")
    parser.add_argument("--max-occupancy", type=_percent, default=100.0, help="percent (default 100)")
    parser.add_argument("--shrinkage", type=_percent, default=0.0, help="percent of paid time off the phones")


def register(sub: argparse._SubParsersAction) -> list[str]:
    report = sub.add_parser(
        "report", help="service level, ASA, abandons, AHT, occupancy for a day, week, month, quarter or range"
    )
    report.add_argument("--tenant", help="required")
    report.add_argument("--period", choices=reports.PERIODS, default="day")
    report.add_argument("--date", type=_date, help="a day in the period (default: today in the tenant's zone)")
    report.add_argument("--until", type=_date, help="a range's last day (--period range; --date is its first)")
    report.add_argument("--by", choices=["queue", "agent"], default="queue")
    report.add_argument("--csv", metavar="FILE", help="also write the rows to a CSV file")
    report.add_argument("--short-abandon", type=float, default=reports.SHORT_ABANDON_S, help="seconds (default 5)")
    actions = report.add_subparsers(dest="action")
    rollup = actions.add_parser(
        "rollup", help="roll days up into their kept reports (the timers worker does it as days end; this backfills)"
    )
    rollup.add_argument("--tenant", required=True)
    rollup.add_argument("--from", dest="first", type=_date, help="first day (default: the first not rolled up)")
    rollup.add_argument("--to", dest="last", type=_date, help="last day (default: the last that is over)")

    plan = sub.add_parser("staffing", help="agents needed for a service level (Erlang C)")
    plan.add_argument("--calls-per-interval", type=float)
    plan.add_argument("--aht", type=float, help="average handle time, seconds")
    _targets(plan, measured=False)
    sources = plan.add_subparsers(dest="source")
    measured = sources.add_parser("measured", help="per interval of a day, from the traffic a queue was offered")
    measured.add_argument("--tenant", required=True)
    measured.add_argument("--queue", required=True)
    measured.add_argument("--date", type=_date, required=True)
    measured.add_argument("--aht", type=float, help="handle time to use instead of the day's measured one")
    _targets(measured, measured=True)

    check = sub.add_parser("health", help="store reachable, consumer groups present, their backlog (exit 0/1)")
    check.add_argument("--max-pending", type=int, help="more pending entries in a group is unhealthy")
    check.add_argument("--max-lag", type=int, help="more undelivered entries in a group is unhealthy")
    check.add_argument("--json", action="store_true")
    return ["report", "staffing", "health"]


async def command(*args: Any) -> None:
    """Called as (deployment, a) when NEEDS_STORE(a) is false, else as (store, deployment, a)."""
    a: argparse.Namespace = args[-1]
    if not NEEDS_STORE(a):
        _given(a)
        return
    run = {"staffing": _measured, "report": _report, "health": _health}[a.command]
    await run(*args)


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}s" if value < 3600 else f"{value / 3600:.1f}h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _given(a: argparse.Namespace) -> None:
    if a.calls_per_interval is None or a.aht is None:
        raise OpsCommandError("staffing needs --calls-per-interval and --aht (or: staffing measured --tenant ...)")
    result = staffing.agents_needed(
        a.calls_per_interval,
        a.interval_minutes * 60,
        a.aht,
        target_sl=a.target_sl / 100,
        target_s=a.target_seconds,
        max_occupancy=a.max_occupancy / 100,
        shrinkage=a.shrinkage / 100,
    )
    print(
        f"traffic {result.traffic_erlangs:.2f} Erlangs; target {a.target_sl:g}% in {a.target_seconds:g}s, "
        f"occupancy at most {a.max_occupancy:g}%, shrinkage {a.shrinkage:g}%"
    )
    print(f"agents needed {result.agents}, to schedule {result.scheduled}")
    print(f"{'agents':>6} {'service level':>14} {'wait':>7} {'ASA':>7} {'occupancy':>10}")
    load = result.traffic_erlangs
    for agents in range(max(1, result.agents - 2), result.agents + 3):
        sl = staffing.service_level(agents, load, a.aht, a.target_seconds)
        mark = "  <-" if agents == result.agents else ""
        print(
            f"{agents:>6} {_pct(sl):>14} {_pct(staffing.erlang_c(agents, load)):>7} "
            f"{_s(staffing.average_speed_of_answer(agents, load, a.aht)):>7} "
            f"{_pct(staffing.occupancy(agents, load)):>10}{mark}"
        )


async def _measured(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    try:
        tenant.queue(a.queue)
    except KeyError:
        raise OpsCommandError(f"no queue {a.queue!r} in tenant {tenant.id!r}") from None
    result = await staffing.measured(
        store,
        tenant,
        a.queue,
        a.date,
        interval_minutes=a.interval_minutes,
        target_sl=None if a.target_sl is None else a.target_sl / 100,
        target_s=a.target_seconds,
        max_occupancy=a.max_occupancy / 100,
        shrinkage=a.shrinkage / 100,
        aht_s=a.aht,
    )
    print(
        f"{tenant.id} / {a.queue} on {a.date} ({tenant.timezone}): AHT {_s(result.aht_s)} over {result.handled} handled"
    )
    print(f"{'interval':<8} {'contacts':>8} {'Erlangs':>8} {'agents':>7} {'schedule':>9} {'SL':>7} {'ASA':>6}")
    for row in result.intervals:
        if not row.staffing.contacts:
            continue
        s = row.staffing
        print(
            f"{row.start:%H:%M}    {s.contacts:>8.0f} {s.traffic_erlangs:>8.2f} {s.agents:>7} {s.scheduled:>9} "
            f"{_pct(s.service_level):>7} {_s(s.asa_s):>6}"
        )
    if not any(row.staffing.contacts for row in result.intervals):
        print("no contacts that day")


async def _rollup(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    now_ms = events.now_ms()
    last = a.last or rollups.last_due(tenant, now_ms)
    first = a.first
    if first is None:
        through = await rollups.rolled_through(store, tenant.id)
        if through is None:
            first = await rollups.first_day(store, tenant)
        else:
            first = dt.datetime.fromtimestamp(through / 1000, ZoneInfo(tenant.timezone)).date()
    if first is None or first > last:
        print(f"{tenant.id}: nothing to roll up")
    else:
        if last > rollups.last_due(tenant, now_ms):
            print(f"days after {rollups.last_due(tenant, now_ms)} are not over yet (their follow-up day neither)")
        for day, result in await rollups.backfill(store, tenant, first, last, now_ms=now_ms):
            offered = sum(q.offered for q in result.queues.values())
            state = "complete" if result.complete else "PARTIAL (the stream no longer held its start)"
            print(f"{tenant.id} {day}: {offered} offered, {len(result.agents)} agents, {state}")
    through = await rollups.rolled_through(store, tenant.id)
    if through is not None:
        day = dt.datetime.fromtimestamp(through / 1000, ZoneInfo(tenant.timezone)).date()
        print(f"rolled up without a gap before {day} (the events stream keeps what that day still needs)")


async def _report(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    if a.action == "rollup":
        await _rollup(store, deployment, a)
        return
    if not a.tenant:
        raise OpsCommandError("report needs --tenant")
    tenant = deployment.tenant(a.tenant)
    day = a.date or dt.datetime.now(ZoneInfo(tenant.timezone)).date()
    if (a.period == "range") != (a.until is not None) or (a.until is not None and a.until < day):
        raise OpsCommandError("--period range needs --date FIRST and --until LAST (on or after it), and only it does")
    result = await reports.report(store, tenant, a.period, day, short_abandon_s=a.short_abandon, until=a.until)
    print(
        f"{tenant.id}: {a.period} from {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} ({tenant.timezone})"
    )
    if not result.complete:
        print(
            "warning: neither the events stream nor the archive holds the start of this period (trimmed);"
            " figures are partial"
        )
    if a.by == "agent":
        print(
            f"{'agent':<14}{'offers':>7}{'accepted':>9}{'rejected':>9}{'missed':>7}{'AHT':>7}"
            f"{'staffed':>9}{'occupancy':>10}"
        )
        for row in result.agents:
            print(
                f"{row.agent:<14}{row.offers:>7}{row.accepted:>9}{row.rejected:>9}{row.timed_out:>7}{_s(row.aht_s):>7}"
                f"{_s(row.staffed_s):>9}{_pct(row.occupancy):>10}"
            )
    else:
        print(
            f"{'queue':<14}{'offered':>8}{'handled':>8}{'abandon':>8}{'short':>6}{'SL':>8}{'SL-short':>9}{'SL-neutr':>9}"
            f"{'ASA':>6}{'aband%':>8}{'AHT':>7}{'1st resp':>9}{'resolved':>9}"
        )
        for row in [*result.queues, result.total]:
            name = "all" if row.queue == "*" else row.queue
            print(
                f"{name:<14}{row.offered:>8}{row.handled:>8}{row.abandoned:>8}{row.short_abandoned:>6}"
                f"{_pct(row.service_level):>8}{_pct(row.service_level_no_short):>9}"
                f"{_pct(row.service_level_abandons_neutral):>9}{_s(row.asa_s):>6}"
                f"{_pct(row.abandon_rate):>8}{_s(row.aht_s):>7}{_s(row.first_response_s):>9}{_s(row.resolution_s):>9}"
            )
        print(f"occupancy {_pct(result.total.occupancy)}")
        print(f"contacts deflected by help articles: {result.deflected}")
    # satisfaction surveys: their own figures (ops/satisfaction.py), and the CSAT column of the CSV
    figures = await satisfaction.period(store, tenant, result.start.date(), result.end.date())
    satisfaction.fill(result, figures)
    print("\n".join(satisfaction.lines(figures, a.by)))
    if a.csv:
        count = reports.write_csv(a.csv, result, a.by)
        print(f"wrote {count} rows to {a.csv}")


async def _health(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    result = await health.check(store, deployment, max_pending=a.max_pending, max_lag=a.max_lag)
    if a.json:
        print(json.dumps(msgspec.to_builtins(result), indent=2))
    else:
        for group in result.groups:
            state = "missing" if not group.exists else f"pending {group.pending}, lag {group.lag}, "
            state += f"{group.consumers} consumers, {group.length} entries" if group.exists else ""
            print(f"{group.stream} [{group.group}]: {state}")
        for worker in result.workers:
            print(f"{worker.tenant} {worker.role}: " + (f"alive ({worker.last})" if worker.alive else "NO LIVE WORKER"))
        for problem in result.problems:
            print(f"problem: {problem}")
        print({"ready": "ready", "degraded": "DEGRADED", "unready": "NOT READY"}[result.status])
    if result.status != "ready":  # a tenant not served is worth an alert, even if the web process can serve
        raise SystemExit(1)
