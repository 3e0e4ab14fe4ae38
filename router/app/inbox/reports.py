"""The supervisors' reports page: ops.reports' figures for a tenant's day, week, month, quarter or range
as tables and server-drawn SVG charts, and the same report as a CSV download.

    GET /inbox/reports?tenant=T&period=day|week|month|quarter&date=YYYY-MM-DD&by=queue|agent
    GET /inbox/reports?tenant=T&period=range&date=FIRST&until=LAST&by=...  (any span of days)
    GET /inbox/reports.csv?... (the same query)

Supervisors and admins only (403 for agents); a tenant the user has no membership of
is 404, as everywhere in the inbox. A query that cannot run (a date that is not a
date) is 400 with the reason.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from ops import reports
from router import audit, events
from router.app.inbox import charts, satisfaction
from router.app.inbox.access import tenant_of
from router.app.inbox.login import client_address
from router.app.inbox.rendering import brand, render
from router.app.inbox.sessions import USER, require_role
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.errors import ContactRouterError

BY: tuple[str, ...] = ("queue", "agent")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # fromisoformat alone also takes 20261102 and week dates
HOUR_MS = 3600 * 1000
# Stream ids count from 1970 (UTC: a week or a zone ahead of it starts before); the far end keeps
# the neighbouring periods the page links to within what datetime holds.
YEARS = (1971, 9998)
MAX_RANGE_DAYS = 3 * 366  # a custom range's length (the chart draws a bar a day)
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class BadQuery(ContactRouterError, ValueError):
    """A report query that cannot run; the message says which parameter and why."""


class Query(msgspec.Struct, frozen=True):
    tenant: Tenant
    period: str
    day: dt.date
    by: str
    until: dt.date | None = None  # a range's last day


def parse_query(request: web.Request) -> Query:
    """The report asked for, the tenant checked first (404 before any 400, so a wrong
    date does not tell a stranger that a tenant exists)."""
    params = request.query
    visible = request[USER].tenants(request.app[DEPLOYMENT])
    tenant = tenant_of(request, params.get("tenant") or (visible[0] if visible else ""))
    period, by, given = params.get("period") or "day", params.get("by") or "queue", params.get("date", "")
    if period not in reports.PERIODS:
        raise BadQuery(f"period: {period[:20]!r} is not one of {', '.join(reports.PERIODS)}")
    if by not in BY:
        raise BadQuery(f"by: {by[:20]!r} is not one of {', '.join(BY)}")
    if not given:
        day = dt.datetime.fromtimestamp(events.now_ms() / 1000, ZoneInfo(tenant.timezone)).date()  # the report's clock
    else:
        day = _day("date", given)
    until = None
    if period == "range":
        if not params.get("until"):
            raise BadQuery("until: a range needs its last day")
        until = _day("until", params["until"])
        if until < day:
            raise BadQuery(f"until: {until} is before the range's first day {day}")
        if (until - day).days >= MAX_RANGE_DAYS:
            raise BadQuery(f"until: a range is at most {MAX_RANGE_DAYS} days")
    return Query(tenant, period, day, by, until)


def _day(name: str, given: str) -> dt.date:
    try:
        if not DATE.fullmatch(given):
            raise ValueError(given)
        day = dt.date.fromisoformat(given)
    except ValueError:
        raise BadQuery(f"{name}: {given[:40]!r} is not a day as YYYY-MM-DD") from None
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise BadQuery(f"{name}: {given} is outside the years {YEARS[0]} to {YEARS[1]}")
    return day


# --- arrivals per interval ---


def intervals(tenant: Tenant, period: str, start: dt.datetime, end: dt.datetime) -> list[tuple[int, str]]:
    """Where each interval of the chart starts (ms) and its label: the hours of a day (23
    or 25 when the clocks change), the days of a week or a month, in the tenant's zone."""
    zone = ZoneInfo(tenant.timezone)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if period == "day":
        starts = range(start_ms, end_ms, HOUR_MS)
        return [(ms, dt.datetime.fromtimestamp(ms / 1000, zone).strftime("%H:%M")) for ms in starts]
    days = (end.date() - start.date()).days
    result = []
    for offset in range(days):
        day = start.date() + dt.timedelta(days=offset)
        midnight = dt.datetime.combine(day, dt.time(), zone)
        label = f"{day:%a} {day.day}" if period == "week" else str(day.day) if period == "month" else f"{day:%m-%d}"
        result.append((int(midnight.timestamp() * 1000), label))
    return result


def arrivals(result: reports.Report, starts: list[int]) -> dict[str, list[int]]:
    """queue -> contacts offered in each interval of the chart, from the report's per-minute
    arrivals (so the bars add up to the table, whether a day came from its rollup or the stream)."""
    return {queue: reports.per_interval(minutes, starts) for queue, minutes in sorted(result.arrivals.items())}


# --- the page ---


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _link(path: str, query: Query, **changes: str) -> str:
    params = {"tenant": query.tenant.id, "period": query.period, "date": query.day.isoformat(), "by": query.by}
    if query.until is not None:
        params["until"] = query.until.isoformat()
    return f"{path}?{urlencode({**params, **changes})}"


def _neighbours(query: Query, start: dt.datetime, end: dt.datetime) -> tuple[dict[str, str], dict[str, str]]:
    """The query changes for the period before and the one after (a range: as long, just before and after)."""
    if query.until is None:
        return {"date": (start.date() - dt.timedelta(days=1)).isoformat()}, {"date": end.date().isoformat()}
    length = (end.date() - start.date()).days
    shift = dt.timedelta(days=length)
    earlier = {"date": (query.day - shift).isoformat(), "until": (query.until - shift).isoformat()}
    return earlier, {"date": (query.day + shift).isoformat(), "until": (query.until + shift).isoformat()}


def _charts(
    query: Query, result: reports.Report, slots: list[tuple[int, str]], counts: dict[str, list[int]]
) -> dict[str, charts.ColumnChart | charts.BarChart]:
    tenant = query.tenant
    queue_names = {q.id: q.name or q.id for q in tenant.queues}
    agent_names = {a.id: a.name or a.id for a in tenant.agents}
    targets = {q.id: q.sla.percent / 100 for q in tenant.queues}
    totals = [sum(per_queue[i] for per_queue in counts.values()) for i in range(len(slots))]
    breakdown = []
    for i, (_ms, label) in enumerate(slots):
        parts = ", ".join(f"{queue_names.get(q, q)} {c[i]}" for q, c in counts.items() if c[i])
        breakdown.append(f"{label}: {totals[i]}" + (f" ({parts})" if parts else ""))
    found: dict[str, charts.ColumnChart | charts.BarChart] = {
        "arrivals": charts.columns(
            [label for _ms, label in slots],
            ["offered"],
            [[n] for n in totals],
            label_zero=False,
            thin_labels=True,
            titles=breakdown,
        )
    }
    if query.by == "agent":
        names = [agent_names.get(a.agent, a.agent) for a in result.agents]
        found["offers"] = charts.columns(
            names,
            ["offers", "accepted", "rejected", "missed"],
            [[a.offers, a.accepted, a.rejected, a.timed_out] for a in result.agents],
        )
        found["occupancy"] = charts.shares(
            [(name, a.occupancy, None) for name, a in zip(names, result.agents, strict=True)],
            describe=percent,
            empty="not staffed",
        )
    else:
        names = [queue_names.get(q.queue, q.queue) for q in result.queues]
        found["volume"] = charts.columns(
            names,
            ["offered", "handled", "abandoned"],
            [[q.offered, q.handled, q.abandoned] for q in result.queues],
        )
        found["service"] = charts.shares(
            [(name, q.service_level, targets.get(q.queue)) for name, q in zip(names, result.queues, strict=True)],
            describe=percent,
        )
    return found


def _page(request: web.Request, status: int = 200, **context: object) -> web.Response:
    deployment = request.app[DEPLOYMENT]
    choices = [(t, deployment.tenant(t).name or t) for t in request[USER].tenants(deployment)]
    return render(
        request,
        "reports.html",
        status=status,
        tenants=choices,
        periods=reports.PERIODS,
        groupings=BY,
        percent=percent,
        duration=duration,
        **context,
    )


@require_role("supervisor", "admin")
async def page(request: web.Request) -> web.Response:
    try:
        query = parse_query(request)
    except BadQuery as exc:
        params = request.query
        form = {name: params.get(name, "") for name in ("tenant", "period", "date", "until", "by")}
        return _page(request, status=400, error=str(exc), form=form, report=None)
    tenant, store, now_ms = query.tenant, request.app[STORE], events.now_ms()
    start, end = reports.period_bounds(tenant, query.period, query.day, query.until)
    slots = intervals(tenant, query.period, start, end)
    result = await reports.report(store, tenant, query.period, query.day, now_ms=now_ms, until=query.until)
    earlier, later = _neighbours(query, start, end)
    counts = arrivals(result, [ms for ms, _label in slots])
    figures, surveyed = await satisfaction.report_section(store, tenant, query.by, start, end)
    satisfaction.fill(result, figures)  # the CSAT column (ops/satisfaction.py)
    last_day = end.date() - dt.timedelta(days=1)
    return _page(
        request,
        error="",
        form={
            "tenant": tenant.id,
            "period": query.period,
            "date": query.day.isoformat(),
            "until": query.until.isoformat() if query.until else "",
            "by": query.by,
        },
        report=result,
        tenant=tenant,
        brand=brand(tenant),
        by=query.by,
        span=start.date().isoformat() if query.period == "day" else f"{start.date()} to {last_day}",
        queue_names={q.id: q.name or q.id for q in tenant.queues},
        agent_names={a.id: a.name or a.id for a in tenant.agents},
        targets={q.id: f"{q.sla.percent:g} % in {duration(q.sla.seconds)}" for q in tenant.queues},
        charts=_charts(query, result, slots, counts),
        earlier=_link("/inbox/reports", query, **earlier),
        later=_link("/inbox/reports", query, **later),
        csv_url=_link("/inbox/reports.csv", query),
        satisfaction=surveyed,
    )


@require_role("supervisor", "admin")
async def csv_download(request: web.Request) -> web.Response:
    try:
        query = parse_query(request)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    result = await reports.report(request.app[STORE], query.tenant, query.period, query.day, until=query.until)
    figures, _section = await satisfaction.report_section(
        request.app[STORE], query.tenant, query.by, result.start, result.end
    )
    satisfaction.fill(result, figures)
    body = io.StringIO()
    reports.write_csv_rows(body, result, query.by)
    user = request[USER]
    await audit.record(
        request.app[STORE],
        "export",
        actor=user.login,
        client=client_address(request),
        tenants=(query.tenant.id,),
        target=f"report {query.period} {result.start.date()} by {query.by}",
    )
    name = UNSAFE_FILENAME.sub("_", f"report-{query.tenant.id}-{query.period}-{result.start.date()}-{query.by}.csv")
    return web.Response(
        text=body.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/reports", page)
    app.router.add_get("/reports.csv", csv_download)
