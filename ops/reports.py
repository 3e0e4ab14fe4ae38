"""Reports per tenant, queue and agent for a day, week or month.

Two kinds of figures, each counted the way operators compare them:
- contact figures (offered, handled, abandoned, service level, ASA, AHT, first
  response and resolution times) follow the contacts offered in the period (their
  `queued` event falls in it), each to its outcome until the end of the day after the
  one it was queued in; a contact stays with the queue it entered first, whatever
  transfers and overflows did later;
- agent figures (offers, accepts, staffed time, occupancy) count what happened in
  the period, clipped to it (a handling segment, too, is followed until the end of
  the day after the one it began in).

Both are kept as an Aggregate of counts and summed durations, so a period is exactly
the merge of its days: a day that is over, with its follow-up day, is rolled up and kept
in Redis for good (ops/rollups.py), and a week or a month merges the days' rollups with
what the events stream gives for the days without one. Averages and ratios are computed
from the summed counts at the end (build).

Periods are calendar days, ISO weeks (Monday first) and months in the tenant's time
zone. A day without a rollup covers what the stream still holds; `complete` says
whether every day was whole.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import logging
from typing import IO, Literal
from zoneinfo import ZoneInfo

import msgspec

from ops.aggregates import (  # PAGE, decode_event, read_events: ops/metrics.py reads the stream with them
    PAGE,  # noqa: F401
    AgentSums,
    Aggregate,
    QueueSums,
    add_queue,
    compute,
    decode_event,  # noqa: F401
    merge,
    ms,
    read_events,  # noqa: F401
)
from router import events, figures
from router.config import Tenant
from router.keys import Keys
from router.records import archive, periods
from router.store import Store

log = logging.getLogger(__name__)

Period = Literal["day", "week", "month", "quarter", "range"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "quarter", "range")  # range: day to `until`, inclusive
SHORT_ABANDON_S = figures.SHORT_ABANDON_S
# Members of Keys.report_rolled (ops/rollups.py), each scored by a day's start (ms):
ROLLED_THROUGH = "through"  # the first day not rolled up yet
HISTORY_SINCE = "since"  # the first day rolled up, when the stream then held everything ever added


class QueueRow(msgspec.Struct, kw_only=True):
    """Contact figures of one queue (or of the whole tenant: queue "*")."""

    queue: str
    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answered_in_target: int = 0
    pending: int = 0  # first replies still due within their target: neither met nor missed yet
    # router/figures.py defines each: answered in target / (handled + abandoned - pending),
    service_level: float | None = None
    service_level_no_short: float | None = None  # ... without the short abandons
    service_level_abandons_neutral: float | None = None  # ... without the abandons within the target
    asa_s: float | None = None
    abandon_rate: float | None = None  # abandoned / offered
    aht_s: float | None = None
    first_response_s: float | None = None  # text channels
    resolution_s: float | None = None  # text channels
    occupancy: float | None = None  # the tenant's row only: queues share their agents
    csat: float | None = None  # share of ratings of 4-5, filled by ops.satisfaction.fill (None: no answers)


class AgentRow(msgspec.Struct, kw_only=True):
    agent: str
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    aht_s: float | None = None
    staffed_s: float = 0.0  # available or busy
    handling_s: float = 0.0  # with at least one contact in hand while staffed
    occupancy: float | None = None


class Report(msgspec.Struct, kw_only=True):
    tenant: str
    period: str
    start: dt.datetime
    end: dt.datetime
    complete: bool  # the stream still held the whole period
    total: QueueRow
    queues: list[QueueRow]
    agents: list[AgentRow]
    arrivals: dict[str, dict[int, int]] = {}  # queue -> minute since the epoch -> contacts offered
    deflected: int = 0  # "this answered my question" on a help article (router/knowledge), by local date


def period_bounds(
    tenant: Tenant, period: str, day: dt.date, until: dt.date | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """The period holding `day` (a range: from `day` to `until`), as midnights in the tenant's time zone."""
    if period == "day":
        first, after = day, day + dt.timedelta(days=1)
    elif period == "week":
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    elif period == "quarter":
        first = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
        after = (first + dt.timedelta(days=95)).replace(day=1)
    elif period == "range" and until is not None and until >= day:
        first, after = day, until + dt.timedelta(days=1)
    elif period == "range":
        raise ValueError("a range needs its last day, on or after its first")
    else:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    zone = ZoneInfo(tenant.timezone)
    return dt.datetime.combine(first, dt.time(), zone), dt.datetime.combine(after, dt.time(), zone)


def _decode_rollup(raw: bytes | None) -> Aggregate | None:
    if raw is None:
        return None
    try:
        return msgspec.msgpack.decode(raw, type=Aggregate)
    except (msgspec.ValidationError, msgspec.DecodeError):
        log.warning("an unreadable daily rollup is ignored (recomputed from the stream where it still is)")
        return None


async def stored_days(store: Store, tenant: str, days: list[dt.date]) -> list[Aggregate | None]:
    """The daily rollups of these days (None where a day has none)."""
    if not days:
        return []
    raw = await store.redis.hmget(Keys(tenant).report_days, [day.isoformat() for day in days])
    return [_decode_rollup(item) for item in raw]


async def aggregate(store: Store, tenant: Tenant, first: dt.date, after: dt.date, *, now_ms: int) -> Aggregate:
    """The days [first, after): each day's rollup where it has one, the stream for each run
    of days without (a run that starts where the stream was trimmed is not complete; days
    before the tenant's history began are empty, and complete)."""
    days = [first + dt.timedelta(days=n) for n in range((after - first).days)]
    rollups = await stored_days(store, tenant.id, days)
    since = await store.redis.zscore(Keys(tenant.id).report_rolled, HISTORY_SINCE)
    parts: list[Aggregate] = []
    run: list[dt.date] = []
    for day, rollup in [*zip(days, rollups, strict=True), (after, None)]:
        if rollup is None and day != after:
            run.append(day)
            continue
        if run:
            after_run = run[-1] + dt.timedelta(days=1)
            run_start = ms(period_bounds(tenant, "day", run[0])[0])
            run_end = ms(period_bounds(tenant, "day", run[-1])[1])
            if since is not None and run_end <= since:
                parts.append(Aggregate(start_ms=run_start, end_ms=run_end))  # before anything happened
            else:
                chained = parts[-1].presence if parts else None  # the day before's rollup knows who was logged in
                computed = await compute(store, tenant, run[0], after_run, now_ms=now_ms, presence_at_start=chained)
                if not computed.complete and store.archive is not None:  # trimmed: the archive keeps every event
                    computed = await _from_archive(store, tenant, run[0], after_run, now_ms, chained) or computed
                parts.append(computed)
            run = []
        if rollup is not None:
            parts.append(rollup)
    return merge(parts)


async def _from_archive(
    store: Store, tenant: Tenant, first: dt.date, after: dt.date, now_ms: int, presence: dict[str, str] | None
) -> Aggregate | None:
    """The days counted from the archive's events (router/records/periods.py), or None while it cannot answer."""
    assert store.archive is not None
    archived = periods.ArchivedEvents(store.archive)
    try:
        return await compute(store, tenant, first, after, now_ms=now_ms, presence_at_start=presence, archived=archived)
    except archive.UNAVAILABLE as exc:
        log.warning("the archive is unavailable (%s): the report covers what the events stream holds", exc)
        return None


def _queue_row(name: str, sums: QueueSums, short_abandon_s: float) -> QueueRow:
    rated = figures.rates(sums, short_abandon_s)
    return QueueRow(
        queue=name,
        offered=sums.offered,
        handled=sums.handled,
        abandoned=sums.abandoned,
        short_abandoned=rated.short_abandoned,
        answered_in_target=sums.answered_in_target,
        pending=sums.pending,
        service_level=rated.service_level,
        service_level_no_short=rated.service_level_no_short,
        service_level_abandons_neutral=rated.service_level_abandons_neutral,
        asa_s=rated.asa_s,
        abandon_rate=rated.abandon_rate,
        aht_s=rated.aht_s,
        first_response_s=rated.first_response_s,
        resolution_s=rated.resolution_s,
    )


def _agent_row(name: str, sums: AgentSums) -> AgentRow:
    return AgentRow(
        agent=name,
        offers=sums.offers,
        accepted=sums.accepted,
        rejected=sums.rejected,
        timed_out=sums.timed_out,
        aht_s=figures.ratio(sums.handle_ms / 1000, sums.handled),
        staffed_s=sums.staffed_ms / 1000,
        handling_s=sums.handling_ms / 1000,
        occupancy=figures.ratio(sums.handling_ms, sums.staffed_ms),
    )


def build(
    tenant: Tenant, period: str, start: dt.datetime, end: dt.datetime, agg: Aggregate, short_abandon_s: float
) -> Report:
    """The report's rows from an aggregate: averages and ratios from the summed counts."""
    queues = [_queue_row(queue.id, agg.queues.get(queue.id, QueueSums()), short_abandon_s) for queue in tenant.queues]
    every = QueueSums()
    for sums in agg.queues.values():
        add_queue(every, sums)
    total = _queue_row("*", every, short_abandon_s)
    known = [a.id for a in tenant.agents]
    names = known + sorted(set(agg.agents) - set(known))
    agents = [_agent_row(name, agg.agents.get(name, AgentSums())) for name in names]
    staffed_ms = sum(a.staffed_ms for a in agg.agents.values())
    total.occupancy = figures.ratio(sum(a.handling_ms for a in agg.agents.values()), staffed_ms)
    arrivals = {name: dict(sums.arrivals) for name, sums in agg.queues.items()}
    return Report(
        tenant=tenant.id,
        period=period,
        start=start,
        end=end,
        complete=agg.complete,
        total=total,
        queues=queues,
        agents=agents,
        arrivals=arrivals,
    )


async def report(
    store: Store,
    tenant: Tenant,
    period: str,
    day: dt.date,
    *,
    short_abandon_s: float = SHORT_ABANDON_S,
    now_ms: int | None = None,
    until: dt.date | None = None,
) -> Report:
    start, end = period_bounds(tenant, period, day, until)
    now_ms = events.now_ms() if now_ms is None else now_ms
    agg = await aggregate(store, tenant, start.date(), end.date(), now_ms=now_ms)
    result = build(tenant, period, start, end, agg, short_abandon_s)
    result.deflected = await deflected(store, tenant, start.date(), end.date())
    return result


async def deflected(store: Store, tenant: Tenant, first: dt.date, after: dt.date) -> int:
    """Contacts the help articles deflected on the days from `first` up to `after` (counted
    per local date when the customer said an article answered their question)."""
    days = [(first + dt.timedelta(days=n)).isoformat() for n in range((after - first).days)]
    if not days:
        return 0
    return sum(int(count or 0) for count in await store.redis.hmget(Keys(tenant.id).kb_deflected, days))


class Arrivals(msgspec.Struct, frozen=True):
    """A queue's contacts per interval of a day, and its handle time that day."""

    counts: list[tuple[dt.datetime, int]]
    aht_s: float
    handled: int  # contacts the handle time is the average of


def per_interval(arrivals: dict[int, int], starts: list[int]) -> list[int]:
    """Contacts per interval from per-minute arrivals (an arrival before the first start
    counts in the first interval; intervals start at the given ms)."""
    counts = [0] * len(starts)
    for minute, count in arrivals.items():
        counts[max(0, bisect.bisect_right(starts, minute * 60_000) - 1)] += count
    return counts


async def arrivals(store: Store, tenant: Tenant, queue: str, day: dt.date, interval_minutes: int) -> Arrivals:
    start, end = period_bounds(tenant, "day", day)
    start_ms, end_ms = ms(start), ms(end)
    agg = await aggregate(store, tenant, day, day + dt.timedelta(days=1), now_ms=events.now_ms())
    sums = agg.queues.get(queue, QueueSums())
    step_ms = interval_minutes * 60_000
    starts = list(range(start_ms, end_ms, step_ms))  # a day of 23 or 25 hours has fewer or more
    counts = per_interval(sums.arrivals, starts)
    zone = ZoneInfo(tenant.timezone)
    moments = [dt.datetime.fromtimestamp(ms / 1000, zone) for ms in starts]
    aht = sums.handle_ms / 1000 / sums.handle_count if sums.handle_count else 0.0
    return Arrivals(list(zip(moments, counts, strict=True)), aht, sums.handle_count)


QUEUE_COLUMNS = [f for f in QueueRow.__struct_fields__]
AGENT_COLUMNS = [f for f in AgentRow.__struct_fields__]


def _cell(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else ("" if value is None else value)


def write_csv(path: str, result: Report, by: str) -> int:
    """The report's rows as CSV (queues with the tenant's total, or agents); returns rows written."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        return write_csv_rows(handle, result, by)


def write_csv_rows(handle: IO[str], result: Report, by: str) -> int:
    """The same CSV into an open text file (a StringIO for the inbox's download)."""
    if by == "agent":
        columns, rows = AGENT_COLUMNS, result.agents
    else:
        columns, rows = QUEUE_COLUMNS, [*result.queues, result.total]
    writer = csv.writer(handle)
    writer.writerow(["tenant", "period", "start", "end", *columns])
    for row in rows:
        values = [_cell(getattr(row, c)) for c in columns]
        writer.writerow([result.tenant, result.period, result.start.isoformat(), result.end.isoformat(), *values])
    return len(rows)
