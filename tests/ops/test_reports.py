"""Reports from the events stream: one day on a small floor, played through the real
routing code (intake, offers, accepts, replies, closes) on a clock the test moves, so
every figure below is known in advance.
"""

import asyncio
import csv
import datetime as dt
import time

import pytest

from ops import aggregates, reports
from router import agents, bus, conversations, events, figures
from router.app import cli, processes
from tests.factories import World, contact, deployment, world

FLOOR = """
[[tenants]]
id = "acme"
timezone = "UTC"
entry = { default = "support", email = "letters" }

[[tenants.queues]]
id = "support"
sla = { seconds = 20, percent = 80 }

[[tenants.queues]]
id = "letters"
sla = { seconds = 3600, percent = 90, measure = "first_response" }

[[tenants.agents]]
id = "amy"
capacity = { voice = 1, sms = 1, email = 1, total = 1 }

[[tenants.agents]]
id = "zoe"
capacity = { voice = 1, sms = 1, email = 1, total = 1 }
"""

DAY = dt.date(2026, 11, 2)
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    """Wall time for everything that reads it: Python, the store's TIME and stream ids."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        monkeypatch.setattr(time, "time", lambda: self.now)

    def at(self, seconds: float) -> None:
        assert T0 + seconds >= self.now, "the clock only moves forward"
        self.now = T0 + seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


async def hang_up(w, conversation: str, waited_s: float) -> None:
    """A caller hangs up while waiting, as channels.voice.status records it."""
    assert await conversations.close_unanswered(w.store, "acme", conversation, "abandoned")
    gone = events.Abandoned(
        tenant="acme",
        occurred_at=events.now_ms(),
        channel="voice",
        conversation=conversation,
        queue="support",
        waited_ms=int(waited_s * 1000),
    )
    await bus.publish(w.store, w.keys.events, gone)


async def a_day_on_the_floor(clock):
    """Support: A and B by SMS, C hangs up after 3 s, D asks for a callback (E),
    G hangs up after 30 s. Letters: one email F, answered within the hour."""
    w = await world(FLOOR)
    tenant = w.tenant
    await w.available("amy", "zoe")
    a = await w.arrive(channel="sms", address="+15551230001")  # offered to amy (idle longest)
    b = await w.arrive(channel="sms", address="+15551230002")  # offered to zoe
    clock.at(10)
    assert await w.accept_offer("amy") == a  # waited 10 s: within 20 s
    clock.at(30)
    await agents.reply(w.store, tenant, "amy", a, "Looking into it")  # first response after 30 s
    clock.at(40)
    assert await w.accept_offer("zoe") == b  # waited 40 s
    clock.at(50)
    c = await w.arrive(channel="voice", address="+15551230003", kind="call")  # everyone busy: waits
    clock.at(53)
    await hang_up(w, c, 3)  # a short abandon
    clock.at(60)
    call = contact(channel="voice", address="+15551230004", kind="call")
    d = await w.deliver(call)
    clock.at(90)
    assert await conversations.close_unanswered(w.store, "acme", d, "callback_requested")
    e = await w.deliver(contact(channel="voice", address="+15551230004", kind="callback", original_at=call.occurred_at))
    clock.at(100)
    await agents.close(w.store, tenant, "zoe", b, "resolved")  # handled 60 s; E goes to zoe
    clock.at(105)
    assert await w.accept_offer("zoe") == e  # waited 45 s counted from the call
    clock.at(130)
    await agents.close(w.store, tenant, "amy", a, "resolved")  # handled 120 s, resolved after 130 s
    clock.at(205)
    await agents.close(w.store, tenant, "zoe", e, "resolved")  # handled 100 s
    clock.at(300)
    f = await w.arrive(channel="email", address="jane@example.com", body="Invoice?")  # to amy, free longest
    clock.at(310)
    assert await w.accept_offer("amy") == f
    clock.at(900)
    await agents.reply(w.store, tenant, "amy", f, "Attached")  # first response after 600 s
    clock.at(1000)
    await agents.close(w.store, tenant, "amy", f, "resolved")  # handled 690 s
    clock.at(1100)
    await agents.set_presence(w.store, tenant, "amy", "offline")
    await agents.set_presence(w.store, tenant, "zoe", "offline")
    g = await w.arrive(channel="voice", address="+15551230005", kind="call")
    clock.at(1130)
    await hang_up(w, g, 30)
    clock.at(4000)
    return w


async def test_queue_figures_follow_each_contact_offered_that_day(clock):
    w = await a_day_on_the_floor(clock)
    report = await reports.report(w.store, w.tenant, "day", DAY)
    support, letters = report.queues
    # D was replaced by its callback E: offered once, never abandoned
    assert (support.offered, support.handled, support.abandoned, support.short_abandoned) == (5, 3, 2, 1)
    assert support.answered_in_target == 1  # only A; B waited 40 s, E 45 s
    assert support.service_level == pytest.approx(1 / 5, abs=1e-4)
    assert support.service_level_no_short == pytest.approx(1 / 4, abs=1e-4)
    assert support.asa_s == pytest.approx((10 + 40 + 45) / 3, abs=0.05)
    assert support.abandon_rate == pytest.approx(2 / 5, abs=1e-4)
    assert support.aht_s == pytest.approx((120 + 60 + 100) / 3, abs=0.05)
    assert support.first_response_s == pytest.approx(30)  # text channels only: A (B got no reply)
    assert support.resolution_s == pytest.approx((130 + 100) / 2)
    # letters measures the first response: 600 s against a target of an hour
    assert (letters.offered, letters.handled, letters.answered_in_target, letters.service_level) == (1, 1, 1, 1.0)
    assert (letters.asa_s, letters.aht_s, letters.first_response_s, letters.resolution_s) == (10, 690, 600, 700)


async def test_the_short_abandon_threshold_decides_which_abandons_leave_the_second_service_level(clock):
    w = await a_day_on_the_floor(clock)
    none = (await reports.report(w.store, w.tenant, "day", DAY, short_abandon_s=0)).queues[0]
    assert (none.short_abandoned, none.service_level, none.service_level_no_short) == (0, 0.2, 0.2)
    both = (await reports.report(w.store, w.tenant, "day", DAY, short_abandon_s=60)).queues[0]
    assert (both.short_abandoned, both.service_level_no_short) == (2, pytest.approx(1 / 3))


async def test_abandons_within_the_target_are_neutral_in_the_third_service_level(clock):
    w = await a_day_on_the_floor(clock)
    support = (await reports.report(w.store, w.tenant, "day", DAY)).queues[0]
    # C gave up after 3 s, inside the 20 s target: it had no chance to be met, so it counts
    # neither way; G gave up after 30 s and counts against
    assert support.service_level_abandons_neutral == pytest.approx(1 / 4, abs=1e-4)


async def test_a_first_reply_still_inside_its_target_is_pending_not_missed(clock):
    w = await world(FLOOR)
    await w.available("amy")
    mail = await w.arrive(channel="email", address="jane@example.com", body="Invoice?")
    clock.at(10)
    assert await w.accept_offer("amy") == mail
    clock.at(1800)  # half its hour gone, no reply yet
    letters = (await reports.report(w.store, w.tenant, "day", DAY)).queues[1]
    assert (letters.handled, letters.pending, letters.answered_in_target, letters.service_level) == (1, 1, 0, None)
    clock.at(3700)  # the hour passed without a reply: missed
    letters = (await reports.report(w.store, w.tenant, "day", DAY)).queues[1]
    assert (letters.handled, letters.pending, letters.answered_in_target, letters.service_level) == (1, 0, 0, 0.0)


async def test_the_tenant_total_adds_the_queues_up(clock):
    w = await a_day_on_the_floor(clock)
    total = (await reports.report(w.store, w.tenant, "day", DAY)).total
    assert (total.offered, total.handled, total.abandoned, total.answered_in_target) == (6, 4, 2, 2)
    assert total.service_level == pytest.approx(2 / 6, abs=1e-4)
    assert total.asa_s == pytest.approx((10 + 40 + 45 + 10) / 4, abs=0.05)
    assert total.aht_s == pytest.approx((120 + 60 + 100 + 690) / 4, abs=0.05)
    assert total.occupancy == pytest.approx((810 + 160) / 2200, abs=1e-4)
    assert total.csat is None  # no survey results are recorded yet


async def test_agent_figures_count_offers_handle_time_and_occupancy(clock):
    w = await a_day_on_the_floor(clock)
    amy, zoe = (await reports.report(w.store, w.tenant, "day", DAY)).agents
    assert (amy.agent, amy.offers, amy.accepted, amy.rejected, amy.timed_out) == ("amy", 2, 2, 0, 0)
    assert amy.aht_s == pytest.approx((120 + 690) / 2)
    assert (amy.staffed_s, amy.handling_s) == (1100, 810)  # logged in 09:00 to 09:18:20
    assert amy.occupancy == pytest.approx(810 / 1100, abs=1e-4)
    assert (zoe.accepted, zoe.aht_s, zoe.handling_s) == (2, 80, 160)
    assert zoe.occupancy == pytest.approx(160 / 1100, abs=1e-4)


async def test_an_agent_still_logged_in_from_the_day_before_counts_as_staffed_from_midnight(clock):
    w = await world(FLOOR)
    clock.now = T0 - 24 * 3600  # the day before, 09:00
    await w.available("amy")
    clock.at(3600)  # 10:00 on the reported day
    amy = (await reports.report(w.store, w.tenant, "day", DAY)).agents[0]
    assert amy.staffed_s == 10 * 3600
    assert amy.occupancy == 0


async def test_another_day_sees_none_of_it(clock):
    w = await a_day_on_the_floor(clock)
    report = await reports.report(w.store, w.tenant, "day", DAY + dt.timedelta(days=1))
    assert report.total.offered == 0 and report.total.service_level is None
    assert [a.staffed_s for a in report.agents] == [0, 0]


async def test_the_week_and_the_month_hold_the_day(clock):
    w = await a_day_on_the_floor(clock)
    for period in ("week", "month"):
        report = await reports.report(w.store, w.tenant, period, DAY + dt.timedelta(days=3))
        assert (report.total.offered, report.total.handled) == (6, 4), period


def test_periods_are_calendar_days_iso_weeks_and_months_in_the_tenants_zone():
    tenant = deployment(FLOOR.replace('timezone = "UTC"', 'timezone = "America/New_York"')).tenants[0]
    start, end = reports.period_bounds(tenant, "day", dt.date(2026, 11, 1))  # clocks go back that night
    assert (start.isoformat(), end.isoformat()) == ("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00")
    assert end.timestamp() - start.timestamp() == 25 * 3600
    start, end = reports.period_bounds(tenant, "week", dt.date(2026, 11, 5))  # a Thursday
    assert (start.date(), end.date()) == (dt.date(2026, 11, 2), dt.date(2026, 11, 9))
    start, end = reports.period_bounds(tenant, "month", dt.date(2026, 12, 31))
    assert (start.date(), end.date()) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))


async def test_reading_pages_through_a_long_stream(clock, monkeypatch):
    monkeypatch.setattr(aggregates, "PAGE", 3)  # every read returns a few entries
    w = await a_day_on_the_floor(clock)
    report = await reports.report(w.store, w.tenant, "day", DAY)
    assert (report.total.offered, report.total.handled, report.agents[0].handling_s) == (6, 4, 810)


async def test_today_read_on_a_few_events_at_a_time_comes_to_the_days_report(clock, monkeypatch):
    """The floor and the metrics read the day on from where they stopped, a page per scrape."""
    monkeypatch.setattr(aggregates, "PAGE", 3)
    w = await a_day_on_the_floor(clock)
    today, now = aggregates.Today(w.tenant, DAY), events.now_ms()
    first = await today.queues(w.store, now, max_events=1)
    for _ in range(100):  # more than enough pages of 3 for the day's events
        sums = await today.queues(w.store, now, max_events=1)
    assert first != sums  # the first call read only the start
    report = await reports.report(w.store, w.tenant, "day", DAY)
    for row in report.queues:
        assert (sums[row.queue].offered, sums[row.queue].handled, sums[row.queue].abandoned) == (
            row.offered, row.handled, row.abandoned,
        )  # fmt: skip
        assert figures.rates(sums[row.queue]).service_level == row.service_level


async def test_a_report_says_when_the_stream_was_trimmed_past_its_start(clock):
    w = await a_day_on_the_floor(clock)
    assert (await reports.report(w.store, w.tenant, "day", DAY)).complete
    await w.store.redis.xtrim(w.keys.events, minid=f"{int((T0 + 60) * 1000)}-0", approximate=False)
    assert not (await reports.report(w.store, w.tenant, "day", DAY)).complete


async def test_csv_export_has_a_row_per_queue_and_the_total(clock, tmp_path):
    w = await a_day_on_the_floor(clock)
    report = await reports.report(w.store, w.tenant, "day", DAY)
    path = tmp_path / "day.csv"
    assert reports.write_csv(str(path), report, "queue") == 3
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["queue"], r["offered"], r["handled"]) for r in rows] == [
        ("support", "5", "3"),
        ("letters", "1", "1"),
        ("*", "6", "4"),
    ]
    assert rows[0]["start"] == "2026-11-02T00:00:00+00:00"
    assert reports.write_csv(str(path), report, "agent") == 2
    assert [r["agent"] for r in csv.DictReader(path.open(encoding="utf-8"))] == ["amy", "zoe"]


async def test_measured_arrivals_per_interval_feed_staffing(clock):
    from ops import staffing

    w = await a_day_on_the_floor(clock)
    plan = await staffing.measured(w.store, w.tenant, "support", DAY, interval_minutes=30, shrinkage=0.25)
    assert (plan.handled, plan.aht_s) == (3, pytest.approx(93.3, abs=0.05))
    busy = [(row.start.strftime("%H:%M"), row.staffing.contacts) for row in plan.intervals if row.staffing.contacts]
    assert busy == [("09:00", 5)]  # A, B, C, E, G (D became E)
    nine = next(row.staffing for row in plan.intervals if row.staffing.contacts)
    expected = staffing.agents_needed(5, 1800, plan.aht_s, target_sl=0.8, target_s=20, shrinkage=0.25)
    assert nine == expected and nine.agents >= 1
    assert len(plan.intervals) == 48


async def test_the_report_and_staffing_commands_read_the_day(
    redis_url, real_store, write_config, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    config = write_config(FLOOR)
    floor = World(real_store, deployment(FLOOR))
    await processes.prepare(real_store, floor.deployment)
    await floor.available("amy")
    handled = await floor.arrive(channel="sms")
    await floor.accept_offer("amy")
    exported = tmp_path / "today.csv"
    argv = ["--config", str(config), "report", "--tenant", "acme", "--period", "day", "--csv", str(exported)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    assert [(r["queue"], r["offered"], r["handled"]) for r in rows] == [
        ("support", "1", "1"),
        ("letters", "0", "0"),
        ("*", "1", "1"),
    ]
    argv = ["--config", str(config), "report", "--tenant", "acme", "--by", "agent"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    await agents.close(real_store, floor.tenant, "amy", handled, "resolved")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    argv = ["--config", str(config), "staffing", "measured", "--tenant", "acme", "--queue", "support", "--date", today]
    assert await asyncio.to_thread(cli.main, argv) == 0
    printed = capsys.readouterr().out
    assert "acme / support" in printed and "over 1 handled" in printed
