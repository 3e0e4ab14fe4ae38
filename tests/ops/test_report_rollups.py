"""Daily report rollups: a week on tests/ops/test_reports.py's floor, played through the real
routing code on a clock the test moves (with work and a login across midnight), rolled up
day by day; weeks and months from the rollups are the ones the stream gives, and stay
whole after the stream is trimmed."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import msgspec
import pytest

from ops import aggregates, reports, rollups, streams
from router import agents, events
from router.app import cli, processes
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, deployment
from tests.ops.test_reports import FLOOR, Clock, a_day_on_the_floor, hang_up
from workers import timers as timers_worker

MONDAY = dt.date(2026, 11, 2)
PLAYED = [MONDAY + dt.timedelta(days=n) for n in range(7)]  # Monday 2 to Sunday 8 November


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def go(clock, day: int, hour: int, minute: int = 0, second: int = 0) -> None:
    when = dt.datetime(2026, 11, day, hour, minute, second, tzinfo=dt.UTC).timestamp()
    assert when >= clock.now, "the clock only moves forward"
    clock.now = when


async def a_week_on_the_floor(clock) -> World:
    """Monday is test_reports' day. Tuesday night amy takes a text at 23:55 and closes it at
    00:20, while a call queued at 23:59:50 is abandoned after midnight; Wednesday an email;
    Friday zoe's day; Saturday amy logs in at 23:00 and out on Sunday at 02:00. The clock
    ends on Tuesday 10th, when every played day and its follow-up day are over."""
    w = await a_day_on_the_floor(clock)
    tenant = w.tenant
    go(clock, 3, 22)
    await w.available("amy")
    go(clock, 3, 23, 50)
    late = await w.arrive(channel="sms", address="+15551230011")
    go(clock, 3, 23, 55)
    assert await w.accept_offer("amy") == late  # waited 300 s
    go(clock, 3, 23, 59, 50)
    call = await w.arrive(channel="voice", address="+15551230012", kind="call")  # amy is busy: waits
    go(clock, 4, 0, 0, 20)
    await hang_up(w, call, 30)  # queued on Tuesday, abandoned on Wednesday
    go(clock, 4, 0, 5)
    await agents.reply(w.store, tenant, "amy", late, "On it")
    go(clock, 4, 0, 20)
    await agents.close(w.store, tenant, "amy", late, "resolved")  # handled 23:55 to 00:20
    go(clock, 4, 0, 30)
    await w.available("zoe")
    go(clock, 4, 10)
    mail = await w.arrive(channel="email", address="jane@example.com", body="Refund?")
    taker = "amy" if await w.offered("amy") else "zoe"
    go(clock, 4, 10, 1)
    assert await w.accept_offer(taker) == mail
    go(clock, 4, 10, 30)
    await agents.reply(w.store, tenant, taker, mail, "Done")
    await agents.close(w.store, tenant, taker, mail, "resolved")
    go(clock, 4, 12)
    await agents.set_presence(w.store, tenant, "amy", "offline")
    await agents.set_presence(w.store, tenant, "zoe", "offline")
    go(clock, 6, 9)
    await w.available("zoe")
    go(clock, 6, 9, 5)
    friday = await w.arrive(channel="sms", address="+15551230013")
    go(clock, 6, 9, 6)
    assert await w.accept_offer("zoe") == friday
    go(clock, 6, 9, 10)
    await agents.close(w.store, tenant, "zoe", friday, "resolved")
    go(clock, 6, 17)
    await agents.set_presence(w.store, tenant, "zoe", "offline")
    go(clock, 7, 23)
    await w.available("amy")
    go(clock, 8, 2)
    await agents.set_presence(w.store, tenant, "amy", "offline")
    go(clock, 10, 0)
    return w


def now_ms() -> int:
    return events.now_ms()


async def stream_days(w: World, first: dt.date, after: dt.date) -> aggregates.Aggregate:
    return await aggregates.compute(w.store, w.tenant, first, after, now_ms=now_ms())


def same(first: reports.Report, second: reports.Report) -> bool:
    return msgspec.to_builtins(first) == msgspec.to_builtins(second)


async def test_any_run_of_days_is_the_merge_of_its_days(clock):
    w = await a_week_on_the_floor(clock)
    days = [MONDAY - dt.timedelta(days=1), *PLAYED, PLAYED[-1] + dt.timedelta(days=1)]
    each = {day: await stream_days(w, day, day + dt.timedelta(days=1)) for day in days}
    for first, last in itertools.combinations_with_replacement(range(len(days)), 2):
        run = days[first : last + 1]
        merged = aggregates.merge(each[day] for day in run)
        assert merged == await stream_days(w, run[0], run[-1] + dt.timedelta(days=1)), (run[0], run[-1])


async def test_work_across_midnight_counts_in_each_day_it_took_place(clock):
    w = await a_week_on_the_floor(clock)
    tuesday = await stream_days(w, PLAYED[1], PLAYED[2])
    wednesday = await stream_days(w, PLAYED[2], PLAYED[3])
    support = tuesday.queues["support"]
    assert (support.offered, support.handled, support.abandoned, support.abandon_waits_ms) == (2, 1, 1, [30000])
    assert (support.wait_ms, support.handle_ms, support.first_response_ms) == (300_000, 1_500_000, 900_000)
    assert (tuesday.agents["amy"].staffed_ms, tuesday.agents["amy"].handling_ms) == (7_200_000, 300_000)
    assert wednesday.agents["amy"].handling_ms >= 1_200_000  # 00:00 to 00:20, and perhaps the email
    assert "support" not in wednesday.queues  # the late text and the call belong to Tuesday
    assert tuesday.presence == {"amy": "available", "zoe": "offline"}
    saturday, sunday = [await stream_days(w, day, day + dt.timedelta(days=1)) for day in PLAYED[5:7]]
    assert (saturday.agents["amy"].staffed_ms, sunday.agents["amy"].staffed_ms) == (3_600_000, 7_200_000)


async def test_a_month_from_daily_rollups_equals_the_month_from_the_stream(clock):
    w = await a_week_on_the_floor(clock)
    month = await reports.report(w.store, w.tenant, "month", MONDAY)
    week = await reports.report(w.store, w.tenant, "week", MONDAY)
    assert month.total.offered == 10 and month.complete

    assert await rollups.roll_up_due(w.store, w.tenant) == PLAYED  # Monday's stream began that day
    assert await rollups.rolled_through(w.store, "acme") == int(
        dt.datetime(2026, 11, 9, tzinfo=dt.UTC).timestamp() * 1000
    )
    kept = await reports.stored_days(w.store, "acme", PLAYED)
    assert aggregates.merge(kept) == await stream_days(w, PLAYED[0], PLAYED[-1] + dt.timedelta(days=1))
    assert same(await reports.report(w.store, w.tenant, "month", MONDAY), month)
    assert same(await reports.report(w.store, w.tenant, "week", MONDAY), week)
    for day in PLAYED:
        assert same(
            await reports.report(w.store, w.tenant, "day", day),
            reports.build(
                w.tenant,
                "day",
                *reports.period_bounds(w.tenant, "day", day),
                await stream_days(w, day, day + dt.timedelta(days=1)),
                5.0,
            ),
        )


async def test_after_a_trim_the_month_is_whole_and_not_marked_partial(clock):
    w = await a_week_on_the_floor(clock)
    month = await reports.report(w.store, w.tenant, "month", MONDAY)
    arrivals = await reports.arrivals(w.store, w.tenant, "support", MONDAY, 60)
    before = await w.store.redis.xlen(w.keys.events)
    # the timers worker's upkeep pass: roll up what is due, then trim (keeping nothing by age)
    await timers_worker._trim(w.store, w.deployment, Settings(stream_keep_hours=0))
    assert await w.store.redis.xlen(w.keys.events) < before
    trimmed = await reports.report(w.store, w.tenant, "month", MONDAY)
    assert trimmed.complete and same(trimmed, month)
    assert (await reports.report(w.store, w.tenant, "week", MONDAY)).complete
    assert await reports.arrivals(w.store, w.tenant, "support", MONDAY, 60) == arrivals  # staffing's intervals
    # the stream alone no longer has Monday: without the rollups that month would be partial
    await w.store.redis.delete(w.keys.report_days)
    assert not (await reports.report(w.store, w.tenant, "month", MONDAY)).complete


async def test_trimming_never_drops_events_of_a_day_not_rolled_up(clock):
    w = await a_week_on_the_floor(clock)
    every = await w.store.redis.xrange(w.keys.events)
    await streams.trim_tenant(w.store, "acme", keep_hours=0)
    assert await w.store.redis.xlen(w.keys.events) == len(every)  # nothing rolled up: nothing goes

    thursday = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    wednesday_and_thursday = await stream_days(w, PLAYED[2], PLAYED[4])
    await rollups.backfill(w.store, w.tenant, PLAYED[0], PLAYED[1])  # Monday and Tuesday only
    assert await rollups.rolled_through(w.store, "acme") == int((thursday - dt.timedelta(days=1)).timestamp() * 1000)
    floor = (thursday - dt.timedelta(days=1, hours=26)).timestamp() * 1000  # Wednesday, and the day before
    needed = [entry for entry in every if int(entry[0].decode().partition("-")[0]) >= floor]
    assert await rollups.trim_floor(w.store, "acme") == f"{int(floor)}-0"
    await streams.trim_tenant(w.store, "acme", keep_hours=0)  # approximate: may keep more
    kept = await w.store.redis.xrange(w.keys.events)
    assert kept[-len(needed) :] == needed
    floor_id = await rollups.trim_floor(w.store, "acme")
    await streams.trim(w.store, w.keys.events, keep_hours=0, approximate=False, keep_from=floor_id)
    assert await w.store.redis.xrange(w.keys.events) == needed  # exactly: Monday's events went
    assert await stream_days(w, PLAYED[2], PLAYED[4]) == wednesday_and_thursday


async def test_rolling_up_twice_gives_the_same_rollup(clock):
    w = await a_week_on_the_floor(clock)
    assert await rollups.roll_up_due(w.store, w.tenant) == PLAYED
    first = await w.store.redis.hgetall(w.keys.report_days)
    marker = await w.store.redis.zrange(w.keys.report_rolled, 0, -1, withscores=True)
    assert await rollups.roll_up_due(w.store, w.tenant) == []  # nothing new is due
    # a second timers worker doing the same days at the same time, and an operator's rerun
    await asyncio.gather(*(rollups.roll_up_day(w.store, w.tenant, day) for day in PLAYED * 2))
    await rollups.backfill(w.store, w.tenant, PLAYED[0], PLAYED[-1])
    assert await w.store.redis.hgetall(w.keys.report_days) == first
    assert await w.store.redis.zrange(w.keys.report_rolled, 0, -1, withscores=True) == marker
    # once the stream is trimmed, a rerun keeps the complete rollups it can no longer recompute
    await streams.trim_tenant(w.store, "acme", keep_hours=0)
    await rollups.backfill(w.store, w.tenant, PLAYED[0], PLAYED[-1])
    assert await w.store.redis.hgetall(w.keys.report_days) == first


async def test_a_day_is_rolled_up_only_once_the_day_after_it_is_over(clock):
    w = await a_week_on_the_floor(clock)
    go(clock, 10, 23, 59)  # Tuesday 10th: Sunday 8th is due, Monday 9th not yet
    assert rollups.last_due(w.tenant, now_ms()) == PLAYED[-1]
    with pytest.raises(ValueError, match="cannot be rolled up before the end of 2026-11-10"):
        await rollups.roll_up_day(w.store, w.tenant, PLAYED[-1] + dt.timedelta(days=1))


async def test_the_rollup_command_backfills_days(redis_url, real_store, write_config, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    config = write_config(FLOOR)
    floor = World(real_store, deployment(FLOOR))
    await processes.prepare(real_store, floor.deployment)
    keys = Keys("acme")
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)
    nine = int(dt.datetime.combine(day, dt.time(9), dt.UTC).timestamp() * 1000)
    played = [
        events.PresenceChanged(tenant="acme", occurred_at=nine, agent="amy", presence="available"),
        events.Queued(tenant="acme", occurred_at=nine + 1000, channel="sms", conversation="c1", queue="support"),
        events.Accepted(
            tenant="acme", occurred_at=nine + 11_000, conversation="c1", reservation="r1", agent="amy", waited_ms=10_000
        ),
        events.WrappedUp(tenant="acme", occurred_at=nine + 71_000, conversation="c1", agent="amy"),
        events.PresenceChanged(tenant="acme", occurred_at=nine + 3_600_000, agent="amy", presence="offline"),
    ]
    for event in played:
        await real_store.redis.xadd(keys.events, {"e": events.encode(event)}, id=f"{event.occurred_at}-0")
    argv = ["--config", str(config), "report", "rollup", "--tenant", "acme", "--from", day.isoformat()]
    assert await asyncio.to_thread(cli.main, argv) == 0
    printed = capsys.readouterr().out
    assert f"acme {day}: 1 offered, 1 agents, complete" in printed
    assert f"acme {day + dt.timedelta(days=1)}: 0 offered" in printed  # the last day that is over
    [kept] = await reports.stored_days(real_store, "acme", [day])
    assert (kept.queues["support"].handled, kept.agents["amy"].staffed_ms, kept.agents["amy"].handling_ms) == (
        1,
        3_600_000,
        60_000,
    )
    assert await rollups.rolled_through(real_store, "acme") == int(
        dt.datetime.combine(day + dt.timedelta(days=2), dt.time(), dt.UTC).timestamp() * 1000
    )
    argv = ["--config", str(config), "report", "--tenant", "acme", "--period", "day", "--date", day.isoformat()]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert "warning" not in capsys.readouterr().out


async def test_the_timers_worker_rolls_days_up_beside_its_timers_and_then_trims(clock, monkeypatch):
    w = await a_week_on_the_floor(clock)
    month = await reports.report(w.store, w.tenant, "month", MONDAY)
    monkeypatch.setattr(timers_worker, "TRIM_EVERY_S", 0.0)
    stop = asyncio.Event()
    settings = Settings(consumer="t", stream_keep_hours=0)
    worker = asyncio.create_task(timers_worker.run(w.store, w.deployment, settings, stop))
    for _ in range(500):
        if await rollups.rolled_through(w.store, "acme") is not None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert None not in await reports.stored_days(w.store, "acme", PLAYED)
    after = await reports.report(w.store, w.tenant, "month", MONDAY)
    assert after.complete and same(after, month)
