"""The supervisors' floor: today's service level per queue, counted once per
conversation by the measure its queue is set to."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec

from ops import reports
from router import agents, conversations, events, figures
from router.app.inbox.supervisor import ServiceLevels
from tests.factories import world

FLOOR = """
[[tenants]]
id = "acme"
entry = { default = "support", email = "billing" }

[[tenants.queues]]
id = "support"
sla = { seconds = 20, percent = 80 }

[[tenants.queues]]
id = "billing"
sla = { seconds = 3600, percent = 90, measure = "first_response" }

[[tenants.agents]]
id = "amy"

[[tenants.agents]]
id = "zoe"
"""


def counts(sums) -> tuple[int, int, int, int]:
    return sums.answered_in_target, sums.handled, sums.abandoned, sums.pending


async def test_answered_within_target_over_everything_handled_today() -> None:
    w = await world(FLOOR)
    levels = ServiceLevels()
    quick = await w.assigned_to("amy", address="+15551230001")
    await w.arrive(address="+15551230002", ago=60)  # its wait counts from a minute ago
    [offer] = await w.offers("amy")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    assert counts((await levels.today(w.store, w.tenant))["support"]) == (1, 2, 0, 0)

    await w.available("zoe")
    await agents.transfer(w.store, w.tenant, "amy", quick, to_agent="zoe")
    await w.accept_offer("zoe")
    assert counts((await levels.today(w.store, w.tenant))["support"]) == (1, 2, 0, 0)  # a transfer is no new answer


async def test_first_response_queues_count_the_first_reply_not_the_accept() -> None:
    w = await world(FLOOR)
    levels = ServiceLevels()
    mail = await w.assigned_to("amy", channel="email", address="jane@example.com", body="invoice?")
    # taken, not replied to, its hour not over: neither met nor missed yet
    assert counts((await levels.today(w.store, w.tenant))["billing"]) == (0, 1, 0, 1)
    await conversations.send_reply(w.store, "acme", mail, "amy", "attached")
    await conversations.send_reply(w.store, "acme", mail, "amy", "and again")
    assert counts((await levels.today(w.store, w.tenant))["billing"]) == (1, 1, 0, 0)


async def test_the_floor_and_the_days_report_say_the_same() -> None:
    """The floor said 20 handled where the report said 15: it counted abandons as handled, and
    yesterday's contacts answered today. Both now count the contacts queued today."""
    w = await world(FLOOR)
    now = events.now_ms()
    midnight = reports.period_bounds(w.tenant, "day", dt.datetime.now(ZoneInfo(w.tenant.timezone)).date())[0]
    today = int(midnight.timestamp() * 1000)
    timeline = [
        (today - 600_000, events.Queued(tenant="acme", occurred_at=0, conversation="late", queue="support")),
        (today + 1, events.Accepted(tenant="acme", occurred_at=0, conversation="late", queue="support",
                                    reservation="r1", agent="amy", waited_ms=600_001)),
        (today + 2, events.Queued(tenant="acme", occurred_at=0, conversation="gone", queue="support")),
        (today + 3, events.Abandoned(tenant="acme", occurred_at=0, conversation="gone", queue="support",
                                     waited_ms=1)),
        (today + 4, events.Queued(tenant="acme", occurred_at=0, conversation="quick", queue="support")),
        (today + 5, events.Accepted(tenant="acme", occurred_at=0, conversation="quick", queue="support",
                                    reservation="r2", agent="amy", waited_ms=1)),
    ]  # fmt: skip
    for at, event in timeline:
        event = msgspec.structs.replace(event, occurred_at=at)
        await w.store.redis.xadd(w.keys.events, {"e": events.encode(event)}, id=f"{at}-0")
    floor = (await ServiceLevels().today(w.store, w.tenant))["support"]
    report = await reports.report(w.store, w.tenant, "day", midnight.date(), now_ms=now)
    [row] = [q for q in report.queues if q.queue == "support"]
    assert (floor.offered, floor.handled, floor.abandoned, floor.answered_in_target) == (2, 1, 1, 1)
    assert (row.offered, row.handled, row.abandoned, row.answered_in_target) == (2, 1, 1, 1)
    assert figures.rates(floor).service_level == row.service_level == 0.5
