"""Stream maintenance: dead letters, replay, and trimming that keeps unacknowledged entries."""

import asyncio

from ops import streams
from router import bus, events, intake
from router.keys import ROUTING_GROUP, Keys
from tests.factories import contact, inbound_entries, read_inbound, world

KEYS = Keys("acme")


class Failing:
    """A handler that never manages to finish an entry (a poison message)."""

    def __init__(self):
        self.attempts = 0

    async def __call__(self, entries):
        self.attempts += len(entries)
        return set()


def routing_consumer(w, handler=None, **options):
    async def route(entries):
        return (await intake.route_batch(w.store, w.deployment, entries, consumer.dead_letter, consumer.name)).done

    consumer = bus.Consumer(w.store, ROUTING_GROUP, "r1", [KEYS.inbound], handler or route, block_ms=1, **options)
    return consumer


async def test_an_entry_that_fails_n_deliveries_goes_to_the_dead_letter_stream():
    w = await world()
    item = contact(body="poison")
    await bus.ingest(w.store, item)
    handler = Failing()
    consumer = routing_consumer(w, handler, claim_idle_ms=0, max_deliveries=3)
    await consumer.ensure_groups()
    await consumer.read()  # delivery 1
    await consumer.reclaim(KEYS.inbound)  # 2
    await consumer.reclaim(KEYS.inbound)  # 3
    assert await streams.dead_letters(w.store, "acme") == []
    await consumer.reclaim(KEYS.inbound)  # a 4th delivery is one too many
    assert handler.attempts == 3
    [dead] = await streams.dead_letters(w.store, "acme")
    assert (dead["stream"], dead["group"], dead["deliveries"], dead["reason"]) == (
        KEYS.inbound,
        ROUTING_GROUP,
        "4",
        "too many deliveries",
    )
    assert dead["summary"] == f"InboundContact sms {item.id}: 'poison'"
    assert (await w.store.redis.xpending(KEYS.inbound, ROUTING_GROUP))["pending"] == 0
    await consumer.reclaim(KEYS.inbound)
    assert handler.attempts == 3  # never handed out again


async def test_an_unroutable_contact_is_dead_lettered_at_once_with_the_reason():
    w = await world()
    # a contact of a tenant this deployment does not serve
    await w.store.redis.xadd(KEYS.inbound, {"e": events.encode(contact("globex"))})
    consumer = routing_consumer(w)
    await consumer.ensure_groups()
    await consumer.read()
    [dead] = await streams.dead_letters(w.store, "acme")
    assert dead["reason"].startswith("unroutable")
    assert (await w.store.redis.xpending(KEYS.inbound, ROUTING_GROUP))["pending"] == 0


async def test_a_contact_whose_address_identifies_nobody_is_dead_lettered():
    w = await world()
    await bus.ingest(w.store, contact(address="not a number"))
    consumer = routing_consumer(w)
    await consumer.ensure_groups()
    await consumer.read()
    [dead] = await streams.dead_letters(w.store, "acme")
    assert "not a phone number" in dead["reason"]
    assert await w.events(events.Queued) == []


async def test_an_undecodable_payload_is_summarised_by_its_size():
    w = await world()
    await w.store.redis.xadd(KEYS.inbound, {"e": b"\xc1garbage"})
    consumer = routing_consumer(w)
    await consumer.ensure_groups()
    await consumer.read()
    [dead] = await streams.dead_letters(w.store, "acme")
    assert dead["summary"] == "8 undecodable bytes"


async def test_a_replayed_dead_letter_is_routed_again():
    w = await world()
    await w.available("amy")
    item = contact(body="please help")
    await bus.ingest(w.store, item)
    failing = routing_consumer(w, Failing(), claim_idle_ms=0, max_deliveries=1)
    await failing.ensure_groups()
    await failing.read()
    await failing.reclaim(KEYS.inbound)
    [dead] = await streams.dead_letters(w.store, "acme")
    # The bug is fixed and the operator replays the entry to the routing workers.
    assert await streams.replay(w.store, "acme") == [dead["dead_id"]]
    assert await streams.dead_letters(w.store, "acme") == []
    assert await routing_consumer(w).read() == 1
    [queued] = await w.events(events.Queued)
    assert await w.offered("amy") == [queued.conversation]


async def test_an_entry_that_already_took_effect_is_not_dead_lettered_so_never_replayed():
    w = await world()
    item = contact()
    await bus.ingest(w.store, item)
    consumer = routing_consumer(w)
    await consumer.ensure_groups()
    [(entry_id, fields)] = await w.store.redis.xrange(KEYS.inbound)
    stale = bus.Entry(KEYS.inbound, entry_id.decode(), fields[b"e"], 9)
    await consumer.read()  # routed by this consumer while another one was giving up on it
    await consumer.dead_letter(stale, "too many deliveries")
    assert await streams.dead_letters(w.store, "acme") == []
    assert await streams.replay(w.store, "acme") == []
    assert len(await w.events(events.Queued)) == 1


async def test_replay_can_pick_single_dead_letters():
    w = await world()
    consumer = routing_consumer(w)
    for entry in await inbound_entries(w.store, [contact(body=f"m{n}") for n in range(3)]):
        await consumer.dead_letter(entry, "test")
    dead = await streams.dead_letters(w.store, "acme")
    assert await streams.replay(w.store, "acme", [dead[1]["dead_id"]]) == [dead[1]["dead_id"]]
    left = await streams.dead_letters(w.store, "acme")
    assert [d["dead_id"] for d in left] == [dead[0]["dead_id"], dead[2]["dead_id"]]
    [replayed] = await read_inbound(w.store, "acme")
    assert events.decode_inbound(replayed.payload).body == "m1"


# --- trimming ---


async def five_entries_two_acknowledged_one_pending(w) -> list[str]:
    """Five inbound entries: 1-2 acknowledged, 3 delivered but not acknowledged, 4-5 not yet read."""
    for n in range(5):
        await bus.ingest(w.store, contact(body=f"m{n}"))
    ids = [entry_id.decode() for entry_id, _ in await w.store.redis.xrange(KEYS.inbound)]
    consumer = routing_consumer(w, lambda entries: _finish(entries, ids[:2]), batch=3)
    await consumer.ensure_groups()
    await consumer.read()
    await asyncio.sleep(0.005)  # every entry is now older than "now"
    return ids


async def _finish(entries, finished):
    return {e for e in entries if e.id in finished}


async def test_trimming_drops_only_entries_every_group_has_acknowledged():
    w = await world()
    ids = await five_entries_two_acknowledged_one_pending(w)
    assert await streams.trim(w.store, KEYS.inbound, keep_hours=0, approximate=False) == 2
    remaining = [entry_id.decode() for entry_id, _ in await w.store.redis.xrange(KEYS.inbound)]
    assert remaining == ids[2:]


async def test_trimming_never_drops_unacknowledged_entries_even_approximately():
    w = await world()
    ids = await five_entries_two_acknowledged_one_pending(w)
    await streams.trim_tenant(w.store, "acme", keep_hours=0)
    remaining = [entry_id.decode() for entry_id, _ in await w.store.redis.xrange(KEYS.inbound)]
    assert remaining[-3:] == ids[2:]
    # the pending entry can still be acknowledged by its consumer
    assert await w.store.redis.xack(KEYS.inbound, ROUTING_GROUP, ids[2]) == 1


async def test_the_slowest_group_decides_what_may_be_trimmed():
    w = await world()
    ids = await five_entries_two_acknowledged_one_pending(w)
    await bus.ensure_group(w.store, KEYS.inbound, "reports")  # has read nothing yet
    assert await streams.trim(w.store, KEYS.inbound, keep_hours=0, approximate=False) == 0
    assert len(ids) == await w.store.redis.xlen(KEYS.inbound)


async def test_recent_entries_are_kept_for_the_retention_period():
    w = await world()
    await five_entries_two_acknowledged_one_pending(w)
    assert await streams.trim(w.store, KEYS.inbound, keep_hours=1, approximate=False) == 0


async def test_a_stream_no_group_reads_is_trimmed_by_age():
    w = await world()
    for n in range(3):
        await w.store.redis.xadd(KEYS.outbox, {"e": b"x", "n": n})
    await asyncio.sleep(0.005)
    assert await streams.trim(w.store, KEYS.outbox, keep_hours=0, approximate=False) == 3
    assert await streams.trim(w.store, Keys("acme").inbound, keep_hours=0) == 0  # no such stream yet
