"""Daily report rollups: once a tenant's day and the day after it (the follow-up its
contacts get) are over in the tenant's zone, the day's figures are computed from the events
stream and kept in Redis for good (ops.aggregates.Aggregate: counts and summed durations), so
weeks, months and older periods no longer depend on what the stream keeps.

The timers worker rolls up what is due before it trims (workers/timers.py), and the events
stream is never trimmed past what the first day not rolled up still needs (ops/streams.py):
the marker in `Keys.report_rolled` says where that day starts. Rolling a day up again gives the
same rollup (its events no longer change), so two timers workers or a rerun are harmless;
a complete rollup is never replaced by one computed after the stream was trimmed.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import msgspec

from ops import aggregates, reports
from router import events
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

# What the first day not rolled up still needs before its start: the day before (up to 25 hours
# when the clocks go back), read for the contacts and handling still open at midnight.
KEEP_BEFORE_MS = 26 * 3600 * 1000
MAX_DAYS_PER_PASS = 31  # a first pass over a long history catches up a month at a time


def _midnight(tenant: Tenant, day: dt.date) -> int:
    start, _end = reports.period_bounds(tenant, "day", day)
    return int(start.timestamp() * 1000)


def last_due(tenant: Tenant, now_ms: int) -> dt.date:
    """The last day that can be rolled up: the day after it (its follow-up) is over too."""
    today = dt.datetime.fromtimestamp(now_ms / 1000, ZoneInfo(tenant.timezone)).date()
    return today - dt.timedelta(days=2)


async def rolled_through(store: Store, tenant: str) -> int | None:
    """Where the first day not rolled up starts (ms), or None before any rollup."""
    score = await store.redis.zscore(Keys(tenant).report_rolled, reports.ROLLED_THROUGH)
    return None if score is None else int(score)


async def _history(store: Store, tenant: Tenant) -> tuple[dt.date, bool] | None:
    """The first day the events stream holds whole, and whether it holds everything ever
    added to it (None: an empty stream)."""
    stream = Keys(tenant.id).events
    first = await store.redis.xrange(stream, count=1)
    if not first:
        return None
    at = int(text(first[0][0]).partition("-")[0])
    day = dt.datetime.fromtimestamp(at / 1000, ZoneInfo(tenant.timezone)).date()
    info = await store.redis.xinfo_stream(stream)
    added = info.get("entries-added")  # Redis 7: nothing trimmed yet when it equals the length
    whole = added is not None and int(added) == int(info["length"])
    return (day if whole or at == _midnight(tenant, day) else day + dt.timedelta(days=1)), whole


async def first_day(store: Store, tenant: Tenant) -> dt.date | None:
    """The first day the events stream holds whole (None: an empty stream)."""
    history = await _history(store, tenant)
    return None if history is None else history[0]


async def roll_up_day(store: Store, tenant: Tenant, day: dt.date, *, now_ms: int | None = None) -> aggregates.Aggregate:
    """Compute one day from the stream and keep it (a complete rollup already kept wins
    over a partial recomputation). The day must be due (see last_due)."""
    now_ms = events.now_ms() if now_ms is None else now_ms
    if day > last_due(tenant, now_ms):
        raise ValueError(f"{day} cannot be rolled up before the end of {day + dt.timedelta(days=1)}")
    previous, existing = await reports.stored_days(store, tenant.id, [day - dt.timedelta(days=1), day])
    result = await aggregates.compute(
        store,
        tenant,
        day,
        day + dt.timedelta(days=1),
        now_ms=now_ms,
        presence_at_start=None if previous is None else previous.presence,
    )
    if existing is not None and existing.complete and not result.complete:
        log.warning("kept the complete rollup of %s for %s: the stream no longer holds that day", day, tenant.id)
        return existing
    await store.redis.hset(Keys(tenant.id).report_days, day.isoformat(), msgspec.msgpack.encode(result))
    return result


async def advance(store: Store, tenant: Tenant) -> dt.date | None:
    """Move the marker past every day rolled up without a gap; returns the first day not
    rolled up (None when there is nothing to start from). Only ever moves forward."""
    keys = Keys(tenant.id)
    through = await rolled_through(store, tenant.id)
    if through is None:
        history = await _history(store, tenant)
        if history is None:
            return None
        day, whole = history
        if whole:  # nothing happened before: the days before are empty, and reports may say so
            await store.redis.zadd(keys.report_rolled, {reports.HISTORY_SINCE: _midnight(tenant, day)}, nx=True)
    else:
        day = dt.datetime.fromtimestamp(through / 1000, ZoneInfo(tenant.timezone)).date()
    stored = {text(name) for name in await store.redis.hkeys(keys.report_days)}
    while day.isoformat() in stored:
        day += dt.timedelta(days=1)
    # ZADD GT: a slower worker that saw fewer days never moves the marker back.
    await store.redis.zadd(keys.report_rolled, {reports.ROLLED_THROUGH: _midnight(tenant, day)}, gt=True)
    return day


async def roll_up_due(store: Store, tenant: Tenant, *, now_ms: int | None = None) -> list[dt.date]:
    """Roll up the days that are over and not rolled up yet, oldest first (at most
    MAX_DAYS_PER_PASS); returns them."""
    now_ms = events.now_ms() if now_ms is None else now_ms
    through = await rolled_through(store, tenant.id)
    if through is None:
        day = await first_day(store, tenant)
    else:
        day = dt.datetime.fromtimestamp(through / 1000, ZoneInfo(tenant.timezone)).date()
    last = last_due(tenant, now_ms)
    if day is None or day > last:
        return []
    done = []
    while day <= last and len(done) < MAX_DAYS_PER_PASS:
        await roll_up_day(store, tenant, day, now_ms=now_ms)
        done.append(day)
        day += dt.timedelta(days=1)
    await advance(store, tenant)
    return done


async def backfill(
    store: Store, tenant: Tenant, first: dt.date, last: dt.date, *, now_ms: int | None = None
) -> list[tuple[dt.date, aggregates.Aggregate]]:
    """Roll up every day from first to last (both included; at most the last due day)."""
    now_ms = events.now_ms() if now_ms is None else now_ms
    last = min(last, last_due(tenant, now_ms))
    done = []
    day = first
    while day <= last:
        done.append((day, await roll_up_day(store, tenant, day, now_ms=now_ms)))
        day += dt.timedelta(days=1)
    await advance(store, tenant)
    return done


async def trim_floor(store: Store, tenant: str) -> str:
    """The oldest events stream id trimming must keep: the day before the first day not
    rolled up ("0-1", everything, before any rollup)."""
    through = await rolled_through(store, tenant)
    return "0-1" if through is None else f"{max(0, through - KEEP_BEFORE_MS)}-0"
