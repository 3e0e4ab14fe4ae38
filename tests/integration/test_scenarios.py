"""Routing scenarios on a real redis-server: what operators and agents see happen.

Contacts go in through the stream bus and a routing consumer, as a webhook's
would; agents act through router.agents; timers run as the timers worker runs them.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from router import agents, bus, events, intake, queues, scripts, timers
from router.keys import ROUTING_GROUP
from router.settings import Settings
from router.store import Store
from tests.factories import World, contact, deployment
from workers import routing

TWO_AGENTS = """
[[tenants]]
id = "acme"
reservation_timeout = 30
max_missed_offers = 3
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }

[[tenants.agents]]
id = "zoe"
skills = { support = 1 }
"""


async def make_world(store, text: str = TWO_AGENTS) -> World:
    config = deployment(text)
    for tenant in config.tenants:
        await queues.apply_tenant(store, tenant)
    return World(store, config)


async def arrive(world: World, **fields) -> None:
    """A customer's contact lands on the inbound stream, as a channel adapter puts it there."""
    await bus.ingest(world.store, contact(world.tenant.id, provider_id=events.new_id(), **fields))


async def route_inbound(world: World) -> int:
    """Run a routing consumer over what is on the inbound streams; returns the entries handled."""
    consumer = routing.consumer(world.store, world.deployment, Settings(consumer="scenario", block_ms=10))
    await consumer.ensure_groups()
    handled = 0
    while read := await consumer.read():
        handled += read
    return handled


async def offers_in_order(world: World) -> list[tuple[str, str]]:
    return [(e.conversation, e.agent) for e in await world.events(events.Reserved)]


async def test_the_same_provider_message_submitted_twice_is_one_contact(real_store):
    world = await make_world(real_store)
    first = contact("acme", provider_id="SM-42", body="my meter is broken")
    retried = msgspec.structs.replace(first, id=events.new_id())  # the provider retried its webhook

    assert (await bus.ingest(real_store, first))[0] is True
    added, entry_id = await bus.ingest(real_store, retried)
    again, same_id = await bus.ingest(real_store, first)
    assert (added, again) == (False, False)
    assert same_id == entry_id

    assert await route_inbound(world) == 1
    # The stream entry handled a second time (by a worker that had read it, stalled and
    # lost it to the one that stored it) changes nothing.
    [(raw_id, fields)] = await real_store.redis.xrange(world.keys.inbound)
    redelivered = bus.Entry(world.keys.inbound, raw_id.decode(), fields[b"e"], deliveries=2)
    dead: list[str] = []

    async def dead_letter(_entry: bus.Entry, reason: str) -> None:
        dead.append(reason)

    routed = await intake.route_batch(real_store, world.deployment, [redelivered], dead_letter, "stalled")
    assert routed == ({redelivered}, {redelivered}) and not dead

    [queued] = await world.events(events.Queued)
    [message] = await world.events(events.MessageAdded)
    assert (message.message, message.provider_id) == (first.id, "SM-42")
    history = await world.store.redis.llen(world.keys.conversation_log(queued.conversation))
    assert history == 1
    assert await world.waiting("support") == [queued.conversation]


async def test_a_rejected_offer_goes_to_another_agent(real_store):
    world = await make_world(real_store)
    await world.available("amy", "zoe")
    await arrive(world)
    await route_inbound(world)
    [(conversation, first)] = await offers_in_order(world)
    second = {"amy": "zoe", "zoe": "amy"}[first]

    [offer] = await world.offers(first)
    await agents.reject(real_store, world.tenant, first, offer["reservation"])

    assert await offers_in_order(world) == [(conversation, first), (conversation, second)]
    [rejected] = await world.events(events.Rejected)
    assert (rejected.agent, rejected.conversation) == (first, conversation)
    assert await world.offered(second) == [conversation]
    assert (await world.agent(first))["load:total"] == "0"
    assert await world.accept_offer(second) == conversation


async def test_a_timed_out_offer_goes_to_another_agent_through_the_timers_process(
    real_store, write_config, workers, eventually
):
    text = TWO_AGENTS.replace("reservation_timeout = 30", "reservation_timeout = 0.5")
    world = await make_world(real_store, text)
    await world.available("amy", "zoe")
    workers.start("timers", "timers-1", write_config(text))
    await eventually(lambda: workers.reading(real_store, {"timers-1"}, command="evalsha"), "the timers worker")

    await arrive(world)
    await route_inbound(world)
    [(conversation, first)] = await offers_in_order(world)
    second = {"amy": "zoe", "zoe": "amy"}[first]

    async def re_offered() -> bool:
        workers.check_alive()
        return len(await offers_in_order(world)) >= 2

    await eventually(re_offered, "the offer timing out and going to the other agent")
    assert (await offers_in_order(world))[:2] == [(conversation, first), (conversation, second)]
    [timed_out, *_] = await world.events(events.TimedOut)
    assert (timed_out.agent, timed_out.conversation, timed_out.missed) == (first, conversation, 1)
    assert (await world.agent(first))["presence"] == "available", "one miss is not enough to go away"


ONE_AT_A_TIME = """
[[tenants]]
id = "acme"
max_missed_offers = 3
entry = { default = "support" }

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
capacity = { sms = 1, total = 1 }
"""


async def test_an_agent_who_misses_three_offers_goes_away(real_store):
    world = await make_world(real_store, ONE_AT_A_TIME)
    await world.available("amy")
    for n in range(4):
        await arrive(world, address=f"+1555000000{n}")
    await route_inbound(world)

    for missed in (1, 2, 3):
        assert len(await world.offered("amy")) == 1, f"amy holds one offer before miss {missed}"
        await world.fire("res:")
        [*_, last] = await world.events(events.TimedOut)
        assert (last.agent, last.missed) == ("amy", missed)
        expected = "available" if missed < 3 else "away"
        assert (await world.agent("amy"))["presence"] == expected, f"after {missed} missed offers"

    [away] = [e for e in await world.events(events.PresenceChanged) if e.presence == "away"]
    assert (away.agent, away.reason) == ("amy", "missed offers")
    assert await world.offered("amy") == []
    assert "amy" not in await world.ready("sms")
    assert len(await world.waiting("support")) == 4, "every missed contact is waiting again"
    assert len(await world.events(events.Reserved)) == 3


ESCALATION = """
[[tenants]]
id = "acme"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues.escalation]]
after = 1
widen = "'billing' in skills"

[[tenants.agents]]
id = "bill"
skills = { billing = 5 }
"""


async def test_a_contact_waiting_past_its_escalation_step_widens_to_more_agents_and_is_served(real_store, eventually):
    world = await make_world(real_store, ESCALATION)
    await world.available("bill")
    await arrive(world)
    await route_inbound(world)
    [queued] = await world.events(events.Queued)
    assert await timers.run_due(real_store, world.tenant) == 0, "the step is not due yet"
    assert await world.events(events.Reserved) == [], "bill has no support skill: not a target yet"
    assert await world.waiting("support") == [queued.conversation]

    async def escalated_and_served() -> bool:
        await timers.run_due(real_store, world.tenant)
        return bool(await world.events(events.Reserved))

    await eventually(escalated_and_served, "the escalation step widening the queue to bill")
    trail = await world.events(events.Escalated, events.Reserved)
    assert [type(e).__name__ for e in trail] == ["Escalated", "Reserved"]
    assert (trail[0].action, trail[0].conversation, trail[0].step) == ("widen", queued.conversation, 0)
    assert (trail[1].agent, trail[1].conversation) == ("bill", queued.conversation)
    assert await world.accept_offer("bill") == queued.conversation


async def test_a_contact_behind_one_an_agent_declined_is_still_offered_to_that_agent(real_store):
    world = await make_world(real_store)
    await world.available("amy")
    await arrive(world, address="+15550000001")
    await route_inbound(world)
    [offer] = await world.offers("amy")
    await agents.reject(real_store, world.tenant, "amy", offer["reservation"])
    declined = offer["conv"]
    assert await world.waiting("support") == [declined]

    # A second customer writes in: amy is free and may take it, though not the one she declined.
    await arrive(world, address="+15550000002")
    await route_inbound(world)
    newer = (await world.events(events.Queued))[-1].conversation
    assert await world.offered("amy") == [newer], "amy must not idle while a contact she may take waits"
    assert await world.waiting("support") == [declined]


class AgentClicksDuringStartup(aioredis.Redis):
    """A client whose next command, once armed, is followed by an agent's presence change."""

    click = None

    async def execute_command(self, *args, **options):
        result = await super().execute_command(*args, **options)
        if self.click is not None:
            click, self.click = self.click, None
            await click()
        return result


async def test_a_process_starting_up_does_not_undo_a_presence_change_made_meanwhile(real_store, redis_url):
    world = await make_world(real_store)
    starting = Store(AgentClicksDuringStartup.from_url(redis_url))
    try:
        # The process writes the configuration, then refreshes each agent's readiness;
        # amy clicks "available" at that moment, from her inbox.
        starting.redis.click = lambda: agents.set_presence(real_store, world.tenant, "amy", "available")
        await queues.apply_tenant(starting, world.tenant)
    finally:
        await starting.close()
    assert (await world.agent("amy"))["presence"] == "available"
    assert "amy" in await world.ready("sms")


async def test_a_contact_queued_behind_others_is_offered_in_its_intake_call_even_if_the_worker_then_dies(
    real_store, monkeypatch
):
    world = await make_world(real_store)
    await world.available("amy")
    # A contact that nothing waits ahead of is offered by its intake call itself; one that
    # queues behind others gets its offer round in that call too: here the one amy
    # declined waits, so she is free while the new one queues.
    await arrive(world)
    await route_inbound(world)
    [declined] = await world.offers("amy")
    await agents.reject(real_store, world.tenant, "amy", declined["reservation"])
    assert await world.waiting("support") == [declined["conv"]]
    await arrive(world, address="+15559870000")  # another customer

    class Killed(BaseException):
        """The worker process dies as soon as its intake call is answered."""

    real_run = scripts.run_pipelined

    async def intake_then_die(redis, calls):
        await real_run(redis, calls)
        raise Killed

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(scripts, "run_pipelined", intake_then_die)
        await route_inbound(world)
    [_, queued] = await world.events(events.Queued)
    assert await world.offered("amy") == [queued.conversation], "offered in the same step as it was stored"
    assert (await real_store.redis.xpending(world.keys.inbound, ROUTING_GROUP))["pending"] == 0


async def test_routing_goes_on_after_redis_lost_its_script_cache(real_store):
    # A restarted Redis (or a new cluster node) knows none of the scripts: the batch
    # that finds them missing loads them and runs again, once.
    world = await make_world(real_store)
    await world.available("amy")
    await real_store.redis.script_flush()
    await arrive(world, address="+15550001111")
    assert await route_inbound(world) == 1
    assert len(await world.offered("amy")) == 1
    assert len(await world.events(events.Queued)) == 1


async def test_a_simulated_call_answered_as_the_customer_hangs_up_ends_one_way_on_a_real_redis(real_store):
    """simulated_call.lua on a real redis-server (its clock; a script that reads TIME and
    writes): the agent answering while the customer hangs up is either a call answered and
    then ended by the customer, or a call missed; never both, never half."""
    from channels.voice import simulated

    world = await make_world(real_store)
    await world.available("amy")
    await world.arrive(channel="voice", kind="call", address="+12015550123", body="")
    [offer] = await world.offers("amy")
    await agents.accept(real_store, world.tenant, "amy", offer["reservation"])
    sid = await simulated.on_accept(real_store, world.tenant, "amy", offer["reservation"])
    answered, hung_up = await asyncio.gather(
        simulated.act(real_store, world.tenant, "amy", sid, "answer"),
        simulated.act(real_store, world.tenant, "amy", sid, "hangup", by="customer"),
    )
    call = await simulated.record(real_store, world.tenant.id, sid)
    if answered == "in-progress":
        assert (hung_up, call["status"], call["hung_up_by"]) == ("completed", "completed", "customer")
        assert int(call["started_at"]) <= int(call["answered_at"]) <= int(call["ended_at"])
    else:
        assert (answered, hung_up, call["status"]) == ("canceled", "canceled", "canceled")
        assert "answered_at" not in call
