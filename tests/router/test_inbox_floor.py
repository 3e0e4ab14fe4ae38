"""The supervisors' floor: today's service level per queue, counted once per
conversation by the measure its queue is set to."""

from __future__ import annotations

from router import agents, bus, conversations, events
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


async def test_answered_within_target_over_everything_handled_today() -> None:
    w = await world(FLOOR)
    levels = ServiceLevels()
    quick = await w.assigned_to("amy", address="+15551230001")
    await w.arrive(address="+15551230002", ago=60)  # its wait counts from a minute ago
    [offer] = await w.offers("amy")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    gone = events.Abandoned(tenant="acme", occurred_at=events.now_ms(), conversation="hung-up", queue="support")
    await bus.publish(w.store, w.keys.events, gone)
    assert (await levels.today(w.store, w.tenant))["support"] == (1, 3)

    await w.available("zoe")
    await agents.transfer(w.store, w.tenant, "amy", quick, to_agent="zoe")
    await w.accept_offer("zoe")
    assert (await levels.today(w.store, w.tenant))["support"] == (1, 3)  # a transfer is not a new answer


async def test_first_response_queues_count_the_first_reply_not_the_accept() -> None:
    w = await world(FLOOR)
    levels = ServiceLevels()
    mail = await w.assigned_to("amy", channel="email", address="jane@example.com", body="invoice?")
    assert "billing" not in await levels.today(w.store, w.tenant)
    await conversations.send_reply(w.store, "acme", mail, "amy", "attached")
    await conversations.send_reply(w.store, "acme", mail, "amy", "and again")
    assert (await levels.today(w.store, w.tenant))["billing"] == (1, 1)
