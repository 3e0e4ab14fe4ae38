"""Routing: reservations, selection strategies, capacity and presence."""

import asyncio

import pytest

from router import agents, assign, events
from router.agents import AgentError
from tests.factories import SUPPORT, contact, inbound_entries, route_entries, world

TWO_TEAMS = """
[[tenants]]
id = "acme"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills and level >= 2"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }

[[tenants.agents]]
id = "bill"
skills = { billing = 4 }
level = 2

[[tenants.agents]]
id = "junior"
skills = { billing = 1 }
level = 1
"""


def strategy(name: str, agents_toml: str, **queue) -> str:
    extra = "".join(f"{k} = {v!r}\n" for k, v in queue.items())
    return f"""
[[tenants]]
id = "acme"

[[tenants.queues]]
id = "support"
strategy = "{name}"
{extra}
{agents_toml}
"""


async def tick():
    """Let the store's clock move on a millisecond, so 'idle since' and 'last offer' differ."""
    await asyncio.sleep(0.003)


# --- reservations ---


async def test_a_new_contact_is_offered_to_an_available_agent_of_its_queue():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    assert offer["conv"] == conversation
    assert offer["queue"] == "support"
    assert (await w.conversation(conversation))["state"] == "reserved"
    [reserved] = await w.events(events.Reserved)
    assert (reserved.agent, reserved.conversation) == ("amy", conversation)


async def test_a_contact_waits_when_nobody_is_available():
    w = await world()
    conversation = await w.arrive()
    assert await w.waiting("support") == [conversation]
    assert (await w.conversation(conversation))["state"] == "queued"
    assert await w.events(events.Reserved) == []


async def test_an_agent_who_becomes_available_is_offered_the_waiting_contact():
    w = await world()
    conversation = await w.arrive()
    await w.available("zoe")
    assert await w.offered("zoe") == [conversation]
    assert await w.waiting("support") == []


async def test_only_agents_the_queue_targets_are_offered_its_contacts():
    w = await world(TWO_TEAMS)
    await w.available("amy", "junior")
    conversation = await w.arrive(queue="billing")
    assert await w.offered("amy") == []
    assert await w.offered("junior") == []  # billing skill, but level 1
    await w.available("bill")
    assert await w.offered("bill") == [conversation]


async def test_a_contact_enters_the_queue_its_channel_chose():
    w = await world(TWO_TEAMS)
    conversation = await w.arrive(queue="billing")
    assert await w.waiting("billing") == [conversation]
    assert await w.waiting("support") == []


async def test_an_unknown_queue_from_a_channel_falls_back_to_the_entry_queue():
    w = await world(TWO_TEAMS)
    conversation = await w.arrive(queue="no-such-queue")
    assert await w.waiting("support") == [conversation]


async def test_accepting_an_offer_assigns_the_conversation():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    assert await w.accept_offer("amy") == conversation
    record = await w.conversation(conversation)
    assert (record["state"], record["agent"]) == ("assigned", "amy")
    assert "answered_at" in record
    [accepted] = await w.events(events.Accepted)
    assert accepted.agent == "amy"
    assert accepted.waited_ms >= 0


async def test_rejected_offer_goes_to_another_agent():
    w = await world()
    await w.available("amy", "zoe")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")  # amy has been idle longest
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert await w.offered("amy") == []
    assert await w.offered("zoe") == [conversation]
    assert [e.agent for e in await w.events(events.Rejected)] == ["amy"]


async def test_an_agent_who_rejected_is_not_offered_the_same_contact_again_at_once():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert await w.offered("amy") == []
    assert await w.waiting("support") == [conversation]
    # ...but amy is still free for other customers.
    other = await w.arrive(address="+15559870000")
    assert await w.offered("amy") == [other]


async def test_a_rejected_offer_gives_the_capacity_back():
    w = await world()
    await w.available("amy")
    await w.arrive()
    [offer] = await w.offers("amy")
    assert (await w.agent("amy"))["load:total"] == "1"
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert (await w.agent("amy"))["load:total"] == "0"
    assert "amy" in await w.ready("sms")


async def test_an_accepted_offer_cannot_be_rejected_afterwards():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    with pytest.raises(AgentError, match="is accepted"):
        await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert (await w.conversation(conversation))["state"] == "assigned"
    assert await w.events(events.Rejected) == []


async def test_accepting_twice_has_no_second_effect():
    w = await world()
    await w.available("amy")
    await w.arrive()
    [offer] = await w.offers("amy")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])  # a double click
    assert len(await w.events(events.Accepted)) == 1
    assert (await w.agent("amy"))["load:total"] == "1"


async def test_nobody_can_answer_someone_elses_offer():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    with pytest.raises(AgentError, match="not yours"):
        await agents.accept(w.store, w.tenant, "zoe", offer["reservation"])
    assert (await w.conversation(conversation))["state"] == "reserved"


async def test_an_unknown_agent_is_refused():
    w = await world()
    with pytest.raises(AgentError, match="no agent"):
        await agents.accept(w.store, w.tenant, "mallory", "whatever.1")


async def test_a_redelivered_contact_is_routed_once():
    w = await world()
    await w.available("amy", "zoe")
    entries = await inbound_entries(w.store, [contact()])
    assert await route_entries(w.store, w.deployment, entries) == set(entries)
    # Delivered again (a worker that read it stalled, another took it over and stored it).
    assert await route_entries(w.store, w.deployment, entries) == set(entries)
    assert len(await w.events(events.Queued)) == 1
    assert len(await w.events(events.Reserved)) == 1


# --- priority and age ---


async def test_higher_priority_contacts_are_offered_first():
    w = await world()
    normal = await w.arrive(address="+15550000001", ago=60)
    urgent = await w.arrive(address="+15550000002", priority=50)
    assert await w.waiting("support") == [urgent, normal]


async def test_among_equal_priorities_the_oldest_contact_is_offered_first():
    w = await world()
    newer = await w.arrive(address="+15550000001", ago=10)
    older = await w.arrive(address="+15550000002", ago=30)
    assert await w.waiting("support") == [older, newer]
    await w.available("amy")
    assert [e.conversation for e in await w.events(events.Reserved)] == [older, newer]


async def test_a_callback_keeps_the_age_of_the_call_it_replaces():
    w = await world()
    waiting = await w.arrive(address="+15550000001", ago=30)
    callback = await w.arrive(
        address="+15550000002", channel="voice", kind="callback", original_at=events.now_ms() - 300_000
    )
    assert await w.waiting("support") == [callback, waiting]


async def test_the_queue_priority_applies_when_the_contact_has_none():
    w = await world(
        """
        [[tenants]]
        id = "acme"
        [[tenants.queues]]
        id = "vip"
        priority = 20
        [[tenants.queues]]
        id = "general"
        """
    )
    conversation = await w.arrive(queue="vip")
    assert (await w.conversation(conversation))["priority"] == "20"


# --- capacity ---


async def test_an_agent_takes_one_call_at_a_time():
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\ncapacity = { voice = 1 }'))
    await w.available("amy")
    first = await w.arrive(channel="voice", address="+15550000001")
    second = await w.arrive(channel="voice", address="+15550000002")
    assert await w.offered("amy") == [first]
    assert await w.waiting("support") == [second]
    assert "amy" not in await w.ready("voice")


async def test_an_agent_in_chats_can_still_take_a_call_up_to_their_capacity():
    w = await world(
        strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\ncapacity = { voice = 1, webchat = 2, total = 3 }')
    )
    await w.available("amy")
    chats = [await w.arrive(channel="webchat", address=f"visitor-{n}", ago=10 - n) for n in range(3)]
    call = await w.arrive(channel="voice", address="+15550000001")
    assert set(await w.offered("amy")) == {call, chats[0], chats[1]}
    assert await w.waiting("support") == [chats[2]]
    status = await w.agent("amy")
    assert (status["load:voice"], status["load:webchat"], status["load:total"]) == ("1", "2", "3")


async def test_the_total_capacity_caps_all_channels_together():
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\ncapacity = { email = 5, total = 2 }'))
    await w.available("amy")
    emails = [await w.arrive(channel="email", address=f"c{n}@example.com") for n in range(3)]
    assert len(await w.offered("amy")) == 2
    assert await w.waiting("support") == [emails[2]]
    assert await w.ready("email") == []


async def test_a_channel_with_zero_capacity_is_never_offered():
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\ncapacity = { voice = 0 }'))
    await w.available("amy")
    call = await w.arrive(channel="voice")
    assert await w.offered("amy") == []
    assert await w.waiting("support") == [call]


async def test_freed_capacity_is_offered_the_next_waiting_contact():
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\ncapacity = { voice = 1 }'))
    await w.available("amy")
    first = await w.arrive(channel="voice", address="+15550000001")
    second = await w.arrive(channel="voice", address="+15550000002")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", first, "resolved")
    assert await w.offered("amy") == [second]


async def test_many_routing_decisions_at_once_never_exceed_an_agents_capacity():
    w = await world(
        strategy(
            "longest_idle",
            '[[tenants.agents]]\nid = "amy"\ncapacity = { webchat = 3 }\n'
            '[[tenants.agents]]\nid = "zoe"\ncapacity = { webchat = 2 }',
        )
    )
    for n in range(12):
        await w.arrive(channel="webchat", address=f"visitor-{n}")
    await w.available("amy", "zoe")
    # Routers racing on the same queue and agents: every decision is one atomic script.
    await asyncio.gather(
        *(assign.assign_queue(w.store, "acme", "support") for _ in range(10)),
        *(assign.assign_agent(w.store, "acme", agent) for agent in ("amy", "zoe") for _ in range(5)),
    )
    assert len(await w.offered("amy")) == 3
    assert len(await w.offered("zoe")) == 2
    reserved = [e.conversation for e in await w.events(events.Reserved)]
    assert len(reserved) == len(set(reserved)) == 5  # no contact offered twice
    assert len(await w.waiting("support")) == 7


# --- presence ---


@pytest.mark.parametrize("presence", ["busy", "away", "offline"])
async def test_an_agent_who_is_not_available_is_not_offered_contacts(presence):
    w = await world()
    await w.available("amy")
    await agents.set_presence(w.store, w.tenant, "amy", presence, "lunch")
    conversation = await w.arrive()
    assert await w.offered("amy") == []
    assert await w.waiting("support") == [conversation]
    assert "amy" not in await w.ready("sms")


async def test_agents_start_offline():
    w = await world()
    assert (await w.agent("amy"))["presence"] == "offline"
    assert await w.ready("sms") == []


async def test_a_presence_change_is_recorded_with_its_reason():
    w = await world()
    await w.available("amy")
    before = await agents.set_presence(w.store, w.tenant, "amy", "away", "training")
    assert before == "available"
    status = await w.agent("amy")
    assert (status["presence"], status["reason"]) == ("away", "training")
    changes = [(e.agent, e.presence, e.reason) for e in await w.events(events.PresenceChanged)]
    assert changes == [("amy", "available", ""), ("amy", "away", "training")]


async def test_setting_the_same_presence_twice_records_one_change():
    w = await world()
    await w.available("amy")
    await w.available("amy")
    assert len(await w.events(events.PresenceChanged)) == 1


async def test_an_unknown_presence_is_refused():
    w = await world()
    with pytest.raises(AgentError, match="presence must be one of"):
        await agents.set_presence(w.store, w.tenant, "amy", "asleep")


async def test_going_away_keeps_the_work_already_accepted():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    await w.accept_offer("amy")
    await agents.set_presence(w.store, w.tenant, "amy", "away")
    assert [c["id"] for c in await agents.work(w.store, w.tenant, "amy")] == [conversation]
    assert (await w.conversation(conversation))["agent"] == "amy"


async def test_reapplying_the_configuration_keeps_presence_and_load():
    from router.queues import apply_tenant

    w = await world()
    await w.available("amy")
    await w.arrive()
    await apply_tenant(w.store, w.tenant)
    status = await w.agent("amy")
    assert (status["presence"], status["load:total"]) == ("available", "1")


# --- strategies ---


async def test_longest_idle_offers_the_agent_idle_longest():
    w = await world(SUPPORT)
    await w.available("zoe")
    await tick()
    await w.available("amy")
    conversation = await w.arrive()
    assert await w.offered("zoe") == [conversation]


async def test_an_agent_with_no_work_ranks_before_an_agent_with_some():
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\n[[tenants.agents]]\nid = "zoe"'))
    await w.available("amy")
    first = await w.arrive(channel="webchat", address="visitor-1")
    assert await w.offered("amy") == [first]
    await w.available("zoe")  # idle for less time, but with nothing to do
    second = await w.arrive(channel="webchat", address="visitor-2")
    assert await w.offered("zoe") == [second]


async def test_busy_agents_rank_in_a_channel_by_their_last_offer_there():
    # Both busy: amy's last offer overall is a chat, after zoe's; for sms amy's last offer
    # is still the older one, so an sms goes to her.
    w = await world(strategy("longest_idle", '[[tenants.agents]]\nid = "amy"\n[[tenants.agents]]\nid = "zoe"'))
    await w.available("amy")
    await w.arrive(channel="sms", address="+15550000001")
    await tick()
    await w.available("zoe")
    await w.arrive(channel="sms", address="+15550000002")  # zoe: no work, ranks first
    await tick()
    chat = await w.arrive(channel="webchat", address="visitor-1")  # zoe got the last sms: amy
    assert chat in await w.offered("amy")
    assert await w.ready("sms") == ["amy", "zoe"]  # the chat moved amy in the chat set only
    assert await w.ready("webchat") == ["zoe", "amy"]
    sms = await w.arrive(channel="sms", address="+15550000003")
    assert sms in await w.offered("amy")


async def test_least_occupied_offers_the_agent_with_the_smallest_share_of_their_capacity():
    # amy is 1 of 2 busy (50%); zoe is 2 of 10 busy (20%) and got her last offer more recently.
    w = await world(
        strategy(
            "least_occupied",
            '[[tenants.agents]]\nid = "amy"\ncapacity = { webchat = 2, total = 2 }\n'
            '[[tenants.agents]]\nid = "zoe"\ncapacity = { webchat = 10, total = 10 }',
        )
    )
    await w.available("amy")
    await w.arrive(channel="webchat", address="visitor-1")
    await tick()
    await w.available("zoe")
    await w.arrive(channel="webchat", address="visitor-2")
    await w.arrive(channel="webchat", address="visitor-3")
    assert (len(await w.offered("amy")), len(await w.offered("zoe"))) == (1, 2)
    fourth = await w.arrive(channel="webchat", address="visitor-4")
    assert fourth in await w.offered("zoe")


async def test_round_robin_offers_the_agent_whose_last_offer_is_oldest():
    w = await world(strategy("round_robin", '[[tenants.agents]]\nid = "amy"\n[[tenants.agents]]\nid = "zoe"'))
    await w.available("amy", "zoe")
    first = await w.arrive(address="+15550000001")
    assert await w.offered("amy") == [first]
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", first, "resolved")
    await tick()
    # zoe steps away and back: she is now the most recently idle, but she has had no offer yet.
    await agents.set_presence(w.store, w.tenant, "zoe", "away")
    await w.available("zoe")
    second = await w.arrive(address="+15550000002")
    assert await w.offered("zoe") == [second]


async def test_proficiency_offers_the_most_skilled_agent():
    w = await world(
        strategy(
            "proficiency",
            '[[tenants.agents]]\nid = "amy"\nskills = { billing = 2 }\n'
            '[[tenants.agents]]\nid = "zoe"\nskills = { billing = 5 }',
            skill="billing",
        )
    )
    await w.available("amy")  # idle longer
    await tick()
    await w.available("zoe")
    conversation = await w.arrive()
    assert await w.offered("zoe") == [conversation]


async def test_proficiency_falls_back_to_the_next_best_agent_when_the_best_is_full():
    w = await world(
        strategy(
            "proficiency",
            '[[tenants.agents]]\nid = "amy"\nskills = { billing = 2 }\ncapacity = { voice = 1 }\n'
            '[[tenants.agents]]\nid = "zoe"\nskills = { billing = 5 }\ncapacity = { voice = 1 }',
            skill="billing",
        )
    )
    await w.available("amy", "zoe")
    first = await w.arrive(channel="voice", address="+15550000001")
    second = await w.arrive(channel="voice", address="+15550000002")
    assert await w.offered("zoe") == [first]
    assert await w.offered("amy") == [second]


STICKY = strategy(
    "sticky",
    '[[tenants.agents]]\nid = "amy"\ncapacity = { sms = 1 }\n[[tenants.agents]]\nid = "zoe"\ncapacity = { sms = 1 }',
    sticky_seconds=60,
)


async def returning_customer_of(w, agent: str) -> str:
    """The customer was served by `agent` in a conversation now closed."""
    conversation = await w.arrive(body="first time")
    assert await w.offered(agent) == [conversation]
    await w.accept_offer(agent)
    await agents.close(w.store, w.tenant, agent, conversation, "resolved")
    return conversation


async def test_sticky_offers_a_returning_customer_to_their_last_agent():
    w = await world(STICKY)
    await w.available("amy", "zoe")
    await w.store.redis.zadd(w.keys.ready("sms"), {"zoe": 0})  # zoe serves the first visit
    await returning_customer_of(w, "zoe")
    # Now amy has been idle longest: only stickiness can explain zoe getting the next one.
    assert await w.ready("sms") == ["amy", "zoe"]
    again = await w.arrive(body="me again")
    assert await w.offered("zoe") == [again]


async def test_sticky_holds_the_contact_while_the_last_agent_is_busy():
    w = await world(STICKY)
    await w.available("zoe")
    await returning_customer_of(w, "zoe")
    await w.arrive(address="+15559990000")  # zoe's one sms slot is taken by someone else
    assert len(await w.offered("zoe")) == 1
    await w.available("amy")
    again = await w.arrive(body="me again")
    assert await w.offered("amy") == []
    assert await w.waiting("support") == [again]
    assert "hold:" + again in await w.timers("hold:")  # the hold ends on a timer


async def test_sticky_does_not_wait_for_a_last_agent_who_is_away():
    w = await world(STICKY)
    await w.available("zoe")
    await returning_customer_of(w, "zoe")
    await agents.set_presence(w.store, w.tenant, "zoe", "away")
    await w.available("amy")
    again = await w.arrive(body="me again")
    assert await w.offered("amy") == [again]


async def test_a_new_customer_of_a_sticky_queue_goes_to_anyone():
    w = await world(STICKY)
    await w.available("amy")
    conversation = await w.arrive()
    assert await w.offered("amy") == [conversation]
    assert (await w.conversation(conversation)).get("sticky_agent", "") == ""


async def test_each_tenant_routes_only_to_its_own_agents():
    w = await world(
        """
        [[tenants]]
        id = "acme"
        [[tenants.queues]]
        id = "support"
        [[tenants.agents]]
        id = "amy"

        [[tenants]]
        id = "globex"
        [[tenants.queues]]
        id = "sales"
        [[tenants.agents]]
        id = "amy"
        """
    )
    globex = w.deployment.tenant("globex")
    await agents.set_presence(w.store, globex, "amy", "available")
    await w.arrive()  # a contact for acme, whose amy is offline
    assert await w.offered("amy") == []
    assert await agents.offers(w.store, globex, "amy") == []
    assert (await w.agent("amy"))["presence"] == "offline"


BLENDED = """
[[tenants]]
id = "acme"
{extra}

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
capacity = {{ voice = 1, sms = 3, total = 4 }}
"""


async def test_an_agent_on_a_call_is_offered_nothing_else_until_it_ends() -> None:
    w = await world(BLENDED.format(extra=""))
    await w.available("amy")
    call = await w.arrive(channel="voice", address="+15550000001")
    await w.accept_offer("amy")
    text = await w.arrive(channel="sms", address="+15550000002")
    assert await w.offered("amy") == []
    await agents.close(w.store, w.tenant, "amy", call, "resolved")
    assert await w.offered("amy") == [text]


async def test_a_tenant_can_let_agents_text_while_on_a_call() -> None:
    w = await world(BLENDED.format(extra="calls_block_other_work = false"))
    await w.available("amy")
    await w.arrive(channel="voice", address="+15550000001")
    await w.accept_offer("amy")
    text = await w.arrive(channel="sms", address="+15550000002")
    assert await w.offered("amy") == [text]
