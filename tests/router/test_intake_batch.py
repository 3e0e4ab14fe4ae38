"""A routing worker's batch goes to Redis as one intake call per shard: the same
outcome as one call per contact, and a contact that cannot be stored fails alone."""

from redis.exceptions import ResponseError

from router import agents, bus, conversations, events, intake, scripts
from router.keys import ROUTING_GROUP, Keys
from tests.factories import World, contact, inbound_entries, read_inbound, route_entries, world

TENANT = """
[[tenants]]
id = "{tenant}"
entry = {{ default = "support" }}

[[tenants.queues]]
id = "support"
target = "true"

[[tenants.agents]]
id = "{agent}"
"""
TWO_TENANTS = TENANT.format(tenant="acme", agent="amy") + TENANT.format(tenant="bolt", agent="bob")


async def route(w, items: list[events.InboundContact]) -> list[bool]:
    """Route the items as one batch (those routed before: delivered again); whether
    each one's entry is done."""
    known: dict[str, bus.Entry] = {}
    for tenant in {i.tenant for i in items}:
        for entry_id, fields in await w.store.redis.xrange(Keys(tenant).inbound):
            entry = bus.Entry(Keys(tenant).inbound, entry_id.decode(), fields[b"e"])
            known[events.decode_inbound(entry.payload).id] = entry
    for entry in await inbound_entries(w.store, [i for i in items if i.id not in known]):
        known[events.decode_inbound(entry.payload).id] = entry
    entries = [known[i.id] for i in items]
    done = await route_entries(w.store, w.deployment, entries)
    return [e in done for e in entries]


async def test_a_batch_over_two_tenants_is_stored_in_order_in_each():
    w = await world(TWO_TENANTS)
    await w.available("amy")
    await agents.set_presence(w.store, w.deployment.tenants[1], "bob", "available")
    items = [
        contact("acme", address="+15550000001", body="first"),
        contact("bolt", address="+15550000002", body="other tenant"),
        contact("acme", address="+15550000001", body="second"),
        contact("acme", address="+15550000003", body="someone else"),
    ]
    assert await route(w, items) == [True] * 4
    added = await w.events(events.MessageAdded)
    assert [e.message for e in added] == [items[0].id, items[2].id, items[3].id]
    first, second, third = added
    assert first.conversation == second.conversation != third.conversation  # the second joins the first
    assert sorted(await w.offered("amy")) == sorted([first.conversation, third.conversation])
    [other] = await w.events(events.MessageAdded, tenant="bolt")
    assert other.message == items[1].id
    assert [e.conversation for e in await w.events(events.Reserved, tenant="bolt")] == [other.conversation]


async def test_a_contact_that_cannot_be_stored_fails_alone_and_the_rest_is_routed_once():
    await fails_alone(await world())


async def test_a_contact_that_cannot_be_stored_fails_alone_on_redis_too(real_store):
    # A Lua error reaches intake.lua's pcall as a table on Redis, as a message in the embedded store.
    await fails_alone(await world(store=real_store))


async def fails_alone(w: World) -> None:
    await w.available("amy", "zoe")
    broken = await w.arrive(address="+15550000001")
    log_key = f"{Keys('acme').base}:conv:{broken}:log"
    # Its history has become something else: the customer's next message cannot be appended.
    await w.store.redis.delete(log_key)
    await w.store.redis.set(log_key, "not a list")
    before = len(await w.events(events.MessageAdded))
    items = [
        contact(address="+15550000002", body="before it"),
        contact(address="+15550000001", body="cannot be stored"),
        contact(address="+15550000003", body="after it"),
    ]
    assert await route(w, items) == [True, False, True], "the failed one stays unacknowledged, for redelivery"
    added = (await w.events(events.MessageAdded))[before:]
    assert [e.message for e in added] == [items[0].id, items[2].id], "each stored once"
    reserved = [e.conversation for e in await w.events(events.Reserved)][1:]
    assert reserved == [added[0].conversation, added[1].conversation], "each offered once"

    # Redelivered once the history is repaired, it joins its conversation; the others are not stored again.
    await w.store.redis.delete(log_key)
    assert await route(w, items) == [True, True, True]
    added = (await w.events(events.MessageAdded))[before:]
    assert [e.message for e in added] == [items[0].id, items[2].id, items[1].id]
    assert added[2].conversation == broken


async def test_a_new_conversation_whose_intake_failed_part_way_is_made_again_and_offered():
    w = await world()
    await w.available("amy")
    item = contact(address="+15550000009", body="first words")
    # The conversation this contact opens takes its id; its history key is in the way.
    log_key = f"{Keys('acme').base}:conv:{item.id}:log"
    await w.store.redis.set(log_key, "not a list")
    assert await route(w, [item]) == [False]
    await w.store.redis.delete(log_key)
    assert await route(w, [item]) == [True]
    [added] = await w.events(events.MessageAdded)
    assert added.conversation == item.id
    assert await w.offered("amy") == [item.id], "offered, not left reserved with no reservation"
    assert [e.body for e in await conversations.history(w.store, "acme", item.id)] == ["first words"]
    assert "res:" + item.id + ".1" in await w.timers("res:")


async def test_an_intake_call_redis_refuses_leaves_its_shards_contacts_pending_and_says_so(monkeypatch, caplog):
    w = await world(TWO_TENANTS)
    await w.available("amy")
    await agents.set_presence(w.store, w.deployment.tenants[1], "bob", "available")
    real_run = scripts.run_pipelined

    async def acme_refused(redis, calls):
        replies = await real_run(redis, [c for c in calls if not (c[0] is w.store.scripts.intake and "acme" in c[1])])
        refused = [i for i, c in enumerate(calls) if c[0] is w.store.scripts.intake and "acme" in c[1]]
        for i in refused:  # as Redis answers a script that stopped with an error
            replies.insert(i, ResponseError("ERR Error running script: out of cheese"))
        return replies

    monkeypatch.setattr(scripts, "run_pipelined", acme_refused)
    items = [contact("acme", address="+15550000001"), contact("bolt", address="+15550000002")]
    assert await route(w, items) == [False, True], "acme's contact stays pending; bolt's shard is not held back"
    assert "failed: ERR Error running script: out of cheese" in caplog.text
    assert await w.events(events.MessageAdded) == []
    [stored] = await w.events(events.MessageAdded, tenant="bolt")
    assert stored.message == items[1].id


async def taken_over(w: World) -> None:
    await w.available("amy")
    [entry] = await inbound_entries(w.store, [contact(address="+15550000004")])  # the tests' worker read it
    stream = Keys("acme").inbound
    # It sat too long: another worker takes it over, as Consumer.reclaim does.
    await w.store.redis.xclaim(stream, ROUTING_GROUP, "other", 0, [entry.id], justid=True)
    # The first worker wakes up: the entry is the other's now, so it passes it over.
    assert await route_entries(w.store, w.deployment, [entry]) == {entry}
    assert await w.events(events.MessageAdded) == []
    assert await intake.route_batch(w.store, w.deployment, [entry], None, "other") == ({entry}, set())
    # And a copy of the entry handled once more (a worker stalled yet longer) has no second effect.
    assert await route_entries(w.store, w.deployment, [entry]) == {entry}
    assert len(await w.events(events.MessageAdded)) == len(await w.events(events.Reserved)) == 1
    assert (await w.store.redis.xpending(stream, ROUTING_GROUP))["pending"] == 0


async def test_an_entry_taken_over_by_another_worker_is_stored_once_by_that_worker():
    await taken_over(await world())


async def test_an_entry_taken_over_by_another_worker_is_stored_once_on_redis_too(real_store):
    await taken_over(await world(store=real_store))


async def test_a_batch_spread_over_many_pending_entries_finds_its_own():
    # intake.lua reads the consumer's pending entries over the batch's range of ids, up
    # to a limit; past it, it looks the batch's entries up one by one.
    w = await world()
    await w.available("amy")
    entries = await inbound_entries(w.store, [contact(address=f"+1555{i:07d}") for i in range(150)])
    first, last = entries[0], entries[-1]
    assert await route_entries(w.store, w.deployment, [last, first]) == {first, last}
    assert {e.message for e in await w.events(events.MessageAdded)} == {
        events.decode_inbound(e.payload).id for e in (first, last)
    }
    pending = await w.store.redis.xpending(Keys("acme").inbound, ROUTING_GROUP)
    assert pending["pending"] == 148, "the two are acknowledged, the rest still pending"


async def test_an_offer_round_that_fails_leaves_the_contact_stored_and_waiting_and_says_so(caplog):
    w = await world()
    await w.available("amy")
    first = await w.arrive(address="+15550000001")
    [offer] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])  # it waits, amy is free
    # The queue's members at level 0 have become something else: the round cannot pick anyone.
    members = f"{Keys('acme').base}:q:support:m:0"
    await w.store.redis.delete(members)
    await w.store.redis.set(members, "not a sorted set")
    item = contact(address="+15550000002")
    entries = await inbound_entries(w.store, [item])
    assert await route_entries(w.store, w.deployment, entries) == set(entries), "stored: done"
    assert "offer round on acme/support failed" in caplog.text
    [_, added] = await w.events(events.MessageAdded)
    assert added.message == item.id
    assert await w.waiting("support") == [first, added.conversation]
    assert (await w.store.redis.xpending(Keys("acme").inbound, ROUTING_GROUP))["pending"] == 0


async def test_a_batch_bigger_than_one_acknowledgement_is_acknowledged_whole(real_store):
    # intake.lua acknowledges in chunks of 1000: Lua unpacks no more than about 8000 values.
    w = await world(store=real_store)
    items = [contact(address=f"+1555{i:07d}") for i in range(2_500)]
    async with real_store.redis.pipeline(transaction=False) as pipe:
        for item in items:
            pipe.xadd(Keys("acme").inbound, {"e": events.encode(item)})
        await pipe.execute()
    entries = await read_inbound(real_store, "acme")
    assert len(entries) == 2_500
    assert await route_entries(real_store, w.deployment, entries) == set(entries)
    assert (await real_store.redis.xpending(Keys("acme").inbound, ROUTING_GROUP))["pending"] == 0
    assert len(await w.events(events.MessageAdded)) == 2_500
