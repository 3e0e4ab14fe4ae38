"""Timers: reservation timeouts, wrap-up, escalation, service levels and sticky holds.

Timers are members of a sorted set scored by due time. Tests make a timer due by
moving its score to the past (World.fire) rather than by waiting, except one
test that checks a real, tiny timeout end to end.
"""

import asyncio

import pytest

from router import agents, events, timers
from router.agents import AgentError
from tests.factories import world

TIMEOUTS = """
[[tenants]]
id = "acme"
reservation_timeout = {timeout}
max_missed_offers = 2

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"

[[tenants.agents]]
id = "zoe"
"""


# --- reservation timeouts ---


async def test_an_offer_not_answered_in_time_goes_to_another_agent():
    w = await world(TIMEOUTS.format(timeout=0.05))
    await w.available("amy", "zoe")
    conversation = await w.arrive()
    assert await w.offered("amy") == [conversation]
    await asyncio.sleep(0.1)
    assert await timers.run_due(w.store, w.tenant) >= 1
    assert await w.offered("amy") == []
    assert await w.offered("zoe") == [conversation]
    [timed_out] = await w.events(events.TimedOut)
    assert (timed_out.agent, timed_out.missed) == ("amy", 1)


async def test_the_reservation_timer_is_due_when_the_offer_expires():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    await w.arrive()
    [offer] = await w.offers("amy")
    [reserved] = await w.events(events.Reserved)
    assert await w.timers("res:") == {"res:" + offer["reservation"]: reserved.expires_at}
    assert reserved.expires_at - reserved.occurred_at == 30_000
    assert int(offer["expires_at"]) == reserved.expires_at  # what the agent's inbox counts down


async def test_an_offer_still_in_time_is_not_timed_out():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    conversation = await w.arrive()
    assert await timers.run_due(w.store, w.tenant) == 0
    assert await w.offered("amy") == [conversation]


async def test_a_timed_out_offer_gives_the_capacity_back():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    await w.arrive()
    await w.fire("res:")
    status = await w.agent("amy")
    assert (status["load:total"], status["missed"]) == ("0", "1")


async def test_a_late_accept_after_the_timeout_is_refused():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy", "zoe")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    await w.fire("res:")
    with pytest.raises(AgentError, match="timed out"):
        await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    assert (await w.conversation(conversation))["agent"] == "zoe"


async def test_a_reservation_timer_handled_twice_has_one_effect():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy", "zoe")
    await w.arrive()
    [offer] = await w.offers("amy")
    await timers.handle(w.store, w.tenant, "res:" + offer["reservation"])
    await timers.handle(w.store, w.tenant, "res:" + offer["reservation"])
    assert len(await w.events(events.TimedOut)) == 1
    assert len(await w.offers("zoe")) == 1


async def test_an_agent_who_misses_too_many_offers_is_set_away():
    w = await world(TIMEOUTS.format(timeout=30))  # max_missed_offers = 2
    await w.available("amy")
    await w.arrive(address="+15550000001")
    await w.fire("res:")
    assert (await w.agent("amy"))["presence"] == "available"
    await w.arrive(address="+15550000002")
    await w.fire("res:")
    status = await w.agent("amy")
    assert (status["presence"], status["reason"]) == ("away", "missed offers")
    assert "amy" not in await w.ready("sms")
    [away] = [e for e in await w.events(events.PresenceChanged) if e.presence == "away"]
    assert away.reason == "missed offers"


async def test_answering_an_offer_resets_the_missed_count():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    await w.arrive(address="+15550000001")
    await w.fire("res:")
    await w.arrive(address="+15550000002")
    await w.accept_offer("amy")
    assert (await w.agent("amy"))["missed"] == "0"


async def test_coming_back_available_resets_the_missed_count():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    for n in range(2):
        await w.arrive(address=f"+1555000000{n}")
        await w.fire("res:")
    await w.available("amy")
    assert (await w.agent("amy"))["missed"] == "0"


async def test_a_declined_contact_is_offered_again_once_the_decline_window_has_passed():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert await w.offered("amy") == []
    # The decline is old now; the re-route timer it scheduled comes due.
    await w.store.redis.zadd(w.keys.conversation_declined(conversation), {"amy": 0})
    await w.fire("route:")
    assert await w.offered("amy") == [conversation]


# --- wrap-up ---

WRAPUP = """
[[tenants]]
id = "acme"
wrapup_seconds = 30

[[tenants.queues]]
id = "support"

[[tenants.queues]]
id = "quick"
wrapup_seconds = 0

[[tenants.agents]]
id = "amy"
capacity = { voice = 1 }
"""


async def test_wrap_up_keeps_the_agents_slot_until_its_timer_ends():
    w = await world(WRAPUP)
    await w.available("amy")
    first = await w.arrive(channel="voice", address="+15550000001")
    second = await w.arrive(channel="voice", address="+15550000002")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", first, "resolved")
    assert (await w.agent("amy"))["load:voice"] == "1"
    assert await w.waiting("support") == [second]
    assert [c["id"] for c in await agents.work(w.store, w.tenant, "amy")] == [first]
    await w.fire("wrap:")
    assert await w.offered("amy") == [second]
    [wrapped] = await w.events(events.WrappedUp)
    assert (wrapped.agent, wrapped.conversation) == ("amy", first)


async def test_the_wrap_up_timer_is_set_from_the_configured_seconds():
    w = await world(WRAPUP)
    await w.available("amy")
    conversation = await w.arrive(channel="voice")
    await w.accept_offer("amy")
    before = events.now_ms()
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    [(member, due)] = (await w.timers("wrap:")).items()
    assert member == f"wrap:amy:{conversation}"
    assert before + 29_000 <= due <= events.now_ms() + 30_000


async def test_an_agent_may_end_wrap_up_early():
    w = await world(WRAPUP)
    await w.available("amy")
    first = await w.arrive(channel="voice", address="+15550000001")
    second = await w.arrive(channel="voice", address="+15550000002")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", first, "resolved")
    assert await agents.end_wrapup(w.store, w.tenant, "amy", first)
    assert await w.offered("amy") == [second]
    assert await w.timers("wrap:") == {}
    assert not await agents.end_wrapup(w.store, w.tenant, "amy", first)  # only once


async def test_a_queue_without_wrap_up_frees_the_slot_at_once():
    w = await world(WRAPUP)
    await w.available("amy")
    conversation = await w.arrive(channel="voice", queue="quick")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    assert (await w.agent("amy"))["load:total"] == "0"
    assert await w.timers("wrap:") == {}


# --- escalation ---

ESCALATION = """
[[tenants]]
id = "acme"
entry = {{ default = "support" }}

[[tenants.queues]]
id = "support"
target = "'support' in skills"
{steps}

[[tenants.queues]]
id = "backup"
target = "'backup' in skills"

[[tenants.agents]]
id = "amy"
skills = {{ support = 1 }}
capacity = {{ sms = 1 }}

[[tenants.agents]]
id = "bill"
skills = {{ billing = 3 }}

[[tenants.agents]]
id = "bea"
skills = {{ backup = 1 }}
"""


def escalating(*steps: str) -> str:
    return ESCALATION.format(steps="".join(f"[[tenants.queues.escalation]]\n{step}\n" for step in steps))


async def test_a_long_wait_raises_the_contacts_priority():
    w = await world(escalating("after = 60\npriority = 20"))
    urgent = await w.arrive(address="+15550000001", priority=10)
    patient = await w.arrive(address="+15550000002", ago=120)
    assert await w.waiting("support") == [urgent, patient]
    await timers.run_due(w.store, w.tenant)
    assert await w.waiting("support") == [patient, urgent]
    assert (await w.conversation(patient))["priority"] == "20"
    [escalated] = await w.events(events.Escalated)
    assert (escalated.conversation, escalated.action, escalated.priority) == (patient, "priority", 20)
    await w.available("amy")  # one sms slot: the escalated contact gets it
    assert await w.offered("amy") == [patient]


async def test_escalation_waits_for_its_time():
    w = await world(escalating("after = 60\npriority = 20"))
    conversation = await w.arrive(ago=10)
    await timers.run_due(w.store, w.tenant)
    assert await w.events(events.Escalated) == []
    assert (await w.conversation(conversation))["priority"] == "0"
    [due] = (await w.timers("esc:")).values()
    assert due == int((await w.conversation(conversation))["enqueued_at"]) + 60_000


async def test_a_long_wait_widens_the_target_to_more_agents():
    w = await world(escalating("after = 120\nwiden = \"'billing' in skills\""))
    await w.available("bill")
    conversation = await w.arrive(ago=200)
    assert await w.offered("bill") == []  # not a support agent
    await timers.run_due(w.store, w.tenant)
    assert await w.offered("bill") == [conversation]
    [escalated] = await w.events(events.Escalated)
    assert escalated.action == "widen"


@pytest.mark.parametrize("agent", ["amy", "bill"])  # the original team, and the widened one
async def test_after_the_widening_an_agent_of_either_team_who_comes_online_is_offered_the_contact(agent):
    w = await world(escalating("after = 120\nwiden = \"'billing' in skills\""))
    conversation = await w.arrive(ago=200)
    await timers.run_due(w.store, w.tenant)
    await w.available(agent)
    assert await w.offered(agent) == [conversation]


async def test_a_fresh_contact_is_not_widened():
    w = await world(escalating("after = 120\nwiden = \"'billing' in skills\""))
    await w.available("bill")
    await w.arrive()
    await timers.run_due(w.store, w.tenant)
    assert await w.offered("bill") == []


async def test_a_long_wait_overflows_the_contact_to_another_queue():
    w = await world(escalating('after = 30\noverflow = "backup"'))
    await w.available("bea")
    conversation = await w.arrive(ago=60)
    await timers.run_due(w.store, w.tenant)
    assert (await w.conversation(conversation))["queue"] == "backup"
    assert await w.waiting("support") == []
    assert await w.offered("bea") == [conversation]
    [escalated] = await w.events(events.Escalated)
    assert (escalated.action, escalated.queue, escalated.to_queue) == ("overflow", "support", "backup")


async def test_an_overflowed_contact_keeps_its_original_age():
    w = await world(escalating('after = 30\noverflow = "backup"'))
    conversation = await w.arrive(ago=60)
    enqueued_at = (await w.conversation(conversation))["enqueued_at"]
    newer = await w.arrive(queue="backup", address="+15559990000")
    await timers.run_due(w.store, w.tenant)
    assert await w.waiting("backup") == [conversation, newer]
    assert (await w.conversation(conversation))["enqueued_at"] == enqueued_at


async def test_escalation_steps_apply_in_order():
    w = await world(escalating("after = 30\npriority = 5", "after = 60\nwiden = \"'billing' in skills\""))
    conversation = await w.arrive(ago=45)
    await timers.run_due(w.store, w.tenant)
    assert [e.step for e in await w.events(events.Escalated)] == [0]
    assert (await w.conversation(conversation))["priority"] == "5"


async def test_an_answered_contact_does_not_escalate():
    w = await world(escalating('after = 30\noverflow = "backup"'))
    await w.available("amy")
    conversation = await w.arrive(ago=60)
    await w.accept_offer("amy")
    await timers.run_due(w.store, w.tenant)
    assert await w.events(events.Escalated) == []
    assert (await w.conversation(conversation))["queue"] == "support"
    assert await w.timers("esc:") == {}


async def test_an_escalation_due_while_the_contact_is_on_offer_waits_for_the_answer():
    w = await world(escalating('after = 30\noverflow = "backup"'))
    await w.available("amy")
    conversation = await w.arrive(ago=60)
    [offer] = await w.offers("amy")
    await timers.run_due(w.store, w.tenant)
    assert await w.events(events.Escalated) == []
    assert f"esc:{conversation}:0" in await w.timers("esc:")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    await w.fire("esc:")
    assert (await w.conversation(conversation))["queue"] == "backup"


# --- service level ---

SLA = """
[[tenants]]
id = "acme"
entry = {{ default = "front" }}

[[tenants.queues]]
id = "front"
target = "'front' in skills"
sla = {sla}

[[tenants.queues]]
id = "tier2"
target = "'tier2' in skills"

[[tenants.agents]]
id = "amy"
skills = {{ front = 1 }}

[[tenants.agents]]
id = "tess"
skills = {{ tier2 = 1 }}
"""


async def test_a_contact_waiting_past_the_service_level_is_recorded_as_a_breach():
    w = await world(SLA.format(sla="{ seconds = 20 }"))
    conversation = await w.arrive(ago=30)
    await timers.run_due(w.store, w.tenant)
    [breach] = await w.events(events.SlaBreached)
    assert (breach.conversation, breach.queue, breach.target_s) == (conversation, "front", 20)
    assert breach.waited_ms >= 30_000
    assert (await w.conversation(conversation))["sla_breached"] == "1"
    assert await w.waiting("front") == [conversation]  # no second-line queue: it stays


async def test_a_breached_contact_escalates_to_the_second_line_queue():
    w = await world(SLA.format(sla='{ seconds = 20, breach_queue = "tier2" }'))
    await w.available("tess")
    conversation = await w.arrive(ago=30)
    await timers.run_due(w.store, w.tenant)
    assert (await w.conversation(conversation))["queue"] == "tier2"
    assert await w.waiting("front") == []
    assert await w.offered("tess") == [conversation]
    [escalated] = await w.events(events.Escalated)
    assert (escalated.action, escalated.to_queue) == ("overflow", "tier2")


async def test_a_contact_answered_in_time_meets_the_service_level():
    w = await world(SLA.format(sla='{ seconds = 20, breach_queue = "tier2" }'))
    await w.available("amy")
    conversation = await w.arrive()
    await w.accept_offer("amy")
    await w.fire("sla:")
    assert await w.events(events.SlaBreached) == []
    assert "sla_breached" not in await w.conversation(conversation)


async def test_the_service_level_timer_counts_from_the_contacts_original_age():
    w = await world(SLA.format(sla="{ seconds = 20 }"))
    conversation = await w.arrive(ago=5)
    [due] = (await w.timers("sla:")).values()
    assert due == int((await w.conversation(conversation))["enqueued_at"]) + 20_000


async def test_an_email_queue_measured_by_first_response_breaches_when_accepted_but_unanswered():
    w = await world(SLA.format(sla='{ seconds = 3600, measure = "first_response" }'))
    await w.available("amy")
    conversation = await w.arrive(channel="email", address="jane@example.com")
    await w.accept_offer("amy")  # taken, but the customer has heard nothing yet
    await w.fire("sla:")
    [breach] = await w.events(events.SlaBreached)
    assert breach.conversation == conversation


async def test_a_first_reply_in_time_meets_a_first_response_target():
    w = await world(SLA.format(sla='{ seconds = 3600, measure = "first_response" }'))
    await w.available("amy")
    conversation = await w.arrive(channel="email", address="jane@example.com")
    await w.accept_offer("amy")
    await agents.reply(w.store, w.tenant, "amy", conversation, "We are on it.")
    await w.fire("sla:")
    assert await w.events(events.SlaBreached) == []


# --- sticky holds and the timers themselves ---

STICKY = """
[[tenants]]
id = "acme"

[[tenants.queues]]
id = "support"
strategy = "sticky"
sticky_seconds = 60

[[tenants.agents]]
id = "amy"

[[tenants.agents]]
id = "zoe"
capacity = { sms = 1 }
"""


async def test_when_the_sticky_hold_ends_anyone_may_take_the_contact():
    w = await world(STICKY)
    await w.available("zoe")
    first = await w.arrive(body="first visit")
    await w.accept_offer("zoe")
    await agents.close(w.store, w.tenant, "zoe", first, "resolved")
    await w.arrive(address="+15559990000")  # zoe is full now
    await w.available("amy")
    again = await w.arrive(body="me again")
    assert await w.offered("amy") == []  # held for zoe
    await w.store.redis.hset(w.keys.conversation(again), "sticky_until", 0)  # the hold's time has passed
    await w.fire("hold:")
    assert await w.offered("amy") == [again]


async def test_a_claimed_timer_whose_worker_died_comes_due_again_after_its_lease():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy", "zoe")
    await w.arrive()
    [member] = await w.timers("res:")
    await w.store.redis.zadd(w.keys.timers, {member: 0})
    # A worker claims the timer and dies before handling it.
    claimed = await w.store.scripts.claim_timers(keys=[w.keys.base], args=[timers.LEASE_MS, 10])
    assert [c.decode() for c in claimed] == [member]
    assert await timers.run_due(w.store, w.tenant) == 0  # leased to the dead worker
    assert (await w.timers("res:"))[member] > events.now_ms() + timers.LEASE_MS // 2
    await w.fire("res:")  # the lease ran out
    assert len(await w.events(events.TimedOut)) == 1


async def test_an_unknown_timer_is_dropped():
    w = await world()
    await w.store.redis.zadd(w.keys.timers, {"bogus:thing": 0})
    await timers.run_due(w.store, w.tenant)
    assert await w.timers() == {}


async def test_an_agent_set_away_for_missed_offers_hands_back_the_others_at_once():
    w = await world(TIMEOUTS.format(timeout=30))
    await w.available("amy")
    first = await w.arrive(address="+15550000001", ago=3)
    second = await w.arrive(address="+15550000002", ago=2)
    third = await w.arrive(address="+15550000003", ago=1)
    assert set(await w.offered("amy")) == {first, second, third}
    await w.store.redis.hset(w.keys.agent("amy"), "missed", 1)  # one more miss and she is away
    [timer] = [m for m in await w.timers("res:") if m.startswith(f"res:{first}")]
    await w.fire(timer)
    assert (await w.agent("amy"))["presence"] == "away"
    assert await w.offered("amy") == []
    await w.available("zoe")
    assert set(await w.offered("zoe")) == {first, second, third}
