"""A routing worker killed with SIGKILL in the middle of a batch loses and doubles nothing.

Its unacknowledged entries are taken over by the surviving workers once they have
been idle for CONTACTROUTER_CLAIM_IDLE_MS; intake is idempotent per contact, so
whatever the dead worker had already stored is not stored twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from router import agents, bus, events, queues
from router.config import load_deployment
from router.keys import ROUTING_GROUP, Keys

pytestmark = pytest.mark.timeout(180)

CONTACTS = 2000
CHANNELS = ("sms", "email", "webchat", "voice")

DEPLOYMENT = """
[[tenants]]
id = "alpha"
reservation_timeout = 600
entry = { default = "front" }

[[tenants.queues]]
id = "front"

[[tenants.agents]]
id = "ann"
capacity = { sms = 2, email = 2, webchat = 2, voice = 1, total = 4 }

[[tenants.agents]]
id = "ari"
capacity = { sms = 1, email = 1, webchat = 1, voice = 1, total = 2 }

[[tenants]]
id = "beta"
reservation_timeout = 600
entry = { default = "back" }

[[tenants.queues]]
id = "back"

[[tenants.agents]]
id = "ben"
capacity = { sms = 3, email = 3, webchat = 3, voice = 1, total = 5 }
"""


def contact(n: int) -> events.InboundContact:
    channel = CHANNELS[n % len(CHANNELS)]
    address = f"user{n}@example.com" if channel == "email" else f"+1555{n:07d}" if channel != "webchat" else f"v{n}"
    return events.InboundContact(
        id=events.new_id(),
        tenant=("alpha", "beta")[n % 2],
        channel=channel,
        address=address,
        provider_id=f"P{n}",
        occurred_at=events.now_ms(),
        body=f"contact {n}",
    )


async def test_routing_worker_killed_mid_batch_loses_and_doubles_no_contact(
    real_store, write_config, workers, event_log, eventually, group
):
    store = real_store
    config = write_config(DEPLOYMENT)
    deployment = load_deployment(config)
    for tenant in deployment.tenants:
        await queues.apply_tenant(store, tenant)
        for agent in tenant.agents:
            await agents.set_presence(store, tenant, agent.id, "available")

    names = ["routing-1", "routing-2", "routing-3"]
    for name in names:
        workers.start("routing", name, config, claim_idle_ms=1500, batch=50, block_ms=200)
    await eventually(lambda: workers.reading(store, set(names)), "three routing workers started and reading")

    contacts = [contact(n) for n in range(CONTACTS)]
    gate = asyncio.Semaphore(16)

    async def arrive(item: events.InboundContact) -> None:
        async with gate:
            await bus.ingest(store, item)

    async def arrive_all() -> None:
        await asyncio.gather(*(arrive(c) for c in contacts))

    arrivals = asyncio.create_task(arrive_all())
    log = event_log([t.id for t in deployment.tenants])

    async def offers_started() -> bool:
        workers.check_alive()
        await log.poll(block_ms=5)
        return bool(log.of(events.Reserved))

    await eventually(offers_started, "the first offer to an agent", every_s=0)

    # Kill a worker inside a batch: freeze the busiest one, and kill it if it holds
    # unacknowledged entries (else it was between batches: let it go on, try again).
    async def killed_mid_batch() -> bool:
        holding = {name: await group.pending_of(store, deployment, name) for name in names}
        victim = max(holding, key=holding.get)
        workers.freeze(victim)
        if await group.pending_of(store, deployment, victim) == 0:
            workers.thaw(victim)
            return False
        workers.kill(victim)
        killed.append(victim)
        return True

    killed: list[str] = []
    await eventually(killed_mid_batch, "a worker caught inside a batch", every_s=0.01)
    [victim] = killed
    assert await group.pending_of(store, deployment, victim) > 0
    await arrivals

    async def all_routed() -> bool:
        workers.check_alive()
        await log.poll()
        seen = {e.message for e in log.of(events.MessageAdded) if e.direction == "in"}
        return len(seen) == CONTACTS and await group.pending(store, deployment) == 0

    await eventually(all_routed, f"all {CONTACTS} contacts routed and nothing pending after {victim} died")
    await log.poll()  # nothing is pending: every effect is stored and its events appended

    # Each contact: one message in one conversation, each conversation queued once.
    messages = Counter(e.message for e in log.of(events.MessageAdded) if e.direction == "in")
    assert set(messages) == {c.id for c in contacts}
    assert set(messages.values()) == {1}, [m for m, n in messages.items() if n > 1][:5]
    conversation_of = {e.message: e.conversation for e in log.of(events.MessageAdded) if e.direction == "in"}
    assert len(set(conversation_of.values())) == CONTACTS, "each contact opens its own conversation"
    queued = Counter(e.conversation for e in log.of(events.Queued))
    assert queued == Counter(set(conversation_of.values())), "each conversation queued exactly once"
    assert set(Counter(e.conversation for e in log.of(events.Reserved)).values()) <= {1}

    # Every conversation is in its queue, or on offer to an agent: none fell between the two.
    for tenant in deployment.tenants:
        keys = Keys(tenant.id)
        waiting = {w.decode() for w in await store.redis.zrange(keys.waiting(tenant.queues[0].id), 0, -1)}
        mine = {e.conversation for e in log.of(events.Queued) if e.tenant == tenant.id}
        offered = {e.conversation for e in log.of(events.Reserved) if e.tenant == tenant.id}
        assert mine == waiting | offered and not waiting & offered, tenant.id
        assert not await store.redis.xlen(keys.dead), "nothing was dead-lettered"
        for row in await store.redis.xinfo_consumers(keys.inbound, ROUTING_GROUP):
            assert int(row["pending"]) == 0, row
    assert not workers.errors(), workers.errors()
