"""The stream bus: validated appends, idempotent ingest, consumer groups."""

import asyncio

import msgspec
import pytest

from router import bus, events
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from tests.factories import contact

KEYS = Keys("acme")


def store():
    return connect(Settings())


class Recorder:
    """A handler that records what it was given and finishes what it is told to."""

    def __init__(self, finish=lambda entry: True):
        self.seen: list[bus.Entry] = []
        self.finish = finish

    async def __call__(self, entries):
        self.seen.extend(entries)
        return {entry for entry in entries if self.finish(entry)}


async def pending_count(s, stream, group):
    return (await s.redis.xpending(stream, group))["pending"]


async def test_publish_appends_a_validated_event():
    s = store()
    event = events.Queued(tenant="acme", occurred_at=1, queue="support", conversation="c1")
    entry_id = await bus.publish(s, KEYS.events, event)
    [(stored_id, fields)] = await s.redis.xrange(KEYS.events)
    assert stored_id.decode() == entry_id
    assert events.decode_state(fields[b"e"]) == event


async def test_publish_refuses_an_invalid_event_and_writes_nothing():
    s = store()
    bad = msgspec.structs.replace(contact(), tenant="Not Valid")
    with pytest.raises(events.InvalidEvent):
        await bus.publish(s, KEYS.inbound, bad)
    assert await s.redis.xlen(KEYS.inbound) == 0


async def test_a_retried_webhook_is_ingested_once():
    s = store()
    item = contact(provider_id="SM123")
    added, first_id = await bus.ingest(s, item)
    again, second_id = await bus.ingest(s, msgspec.structs.replace(item, id=events.new_id()))
    assert (added, again) == (True, False)
    assert second_id == first_id
    assert await s.redis.xlen(KEYS.inbound) == 1


async def test_the_same_provider_id_on_another_channel_is_another_contact():
    s = store()
    await bus.ingest(s, contact(channel="sms", provider_id="42"))
    added, _ = await bus.ingest(s, contact(channel="telegram", address="777", provider_id="42"))
    assert added
    assert await s.redis.xlen(KEYS.inbound) == 2


async def test_each_tenant_has_its_own_inbound_stream():
    s = store()
    await bus.ingest(s, contact("acme"))
    await bus.ingest(s, contact("globex"))
    assert await s.redis.xlen(Keys("acme").inbound) == 1
    assert await s.redis.xlen(Keys("globex").inbound) == 1


async def test_ensure_group_is_idempotent():
    s = store()
    await bus.ensure_group(s, KEYS.inbound, "routing")
    await bus.ensure_group(s, KEYS.inbound, "routing")
    [group] = await s.redis.xinfo_groups(KEYS.inbound)
    assert group["name"] == b"routing"


async def test_a_consumer_reads_new_entries_and_acknowledges_what_it_finished():
    s = store()
    for n in range(3):
        await bus.ingest(s, contact(body=f"m{n}"))
    handler = Recorder(finish=lambda e: events.decode_inbound(e.payload).body != "m1")
    consumer = bus.Consumer(s, "routing", "w1", [KEYS.inbound], handler, block_ms=1)
    await consumer.ensure_groups()
    assert await consumer.read() == 3
    assert [events.decode_inbound(e.payload).body for e in handler.seen] == ["m0", "m1", "m2"]
    # m1 was not finished: it stays pending for a retry, the others are acknowledged.
    assert await pending_count(s, KEYS.inbound, "routing") == 1
    assert await consumer.read() == 0  # nothing new


async def test_an_empty_read_returns_nothing_without_spinning():
    s = store()
    consumer = bus.Consumer(s, "routing", "w1", [KEYS.inbound], Recorder(), block_ms=10)
    await consumer.ensure_groups()
    assert await consumer.read() == 0


async def test_consumers_of_one_group_share_the_entries():
    s = store()
    for n in range(4):
        await bus.ingest(s, contact(body=f"m{n}"))
    first, second = Recorder(), Recorder()
    one = bus.Consumer(s, "routing", "w1", [KEYS.inbound], first, batch=2, block_ms=1)
    two = bus.Consumer(s, "routing", "w2", [KEYS.inbound], second, batch=2, block_ms=1)
    await one.ensure_groups()
    await one.read()
    await two.read()
    assert len(first.seen) == len(second.seen) == 2
    assert {e.id for e in first.seen}.isdisjoint({e.id for e in second.seen})


async def test_another_consumer_takes_over_a_dead_consumers_pending_entries():
    s = store()
    await bus.ingest(s, contact(body="stranded"))
    dead = bus.Consumer(s, "routing", "crashed", [KEYS.inbound], Recorder(finish=lambda e: False), block_ms=1)
    await dead.ensure_groups()
    await dead.read()
    survivor_handler = Recorder()
    survivor = bus.Consumer(s, "routing", "w2", [KEYS.inbound], survivor_handler, claim_idle_ms=0, block_ms=1)
    assert await survivor.reclaim(KEYS.inbound) == 1
    [entry] = survivor_handler.seen
    assert events.decode_inbound(entry.payload).body == "stranded"
    assert entry.deliveries == 2
    assert await pending_count(s, KEYS.inbound, "routing") == 0


async def test_entries_younger_than_the_claim_idle_time_are_left_to_their_consumer():
    s = store()
    await bus.ingest(s, contact())
    busy = bus.Consumer(s, "routing", "w1", [KEYS.inbound], Recorder(finish=lambda e: False), block_ms=1)
    await busy.ensure_groups()
    await busy.read()
    other_handler = Recorder()
    other = bus.Consumer(s, "routing", "w2", [KEYS.inbound], other_handler, claim_idle_ms=60_000)
    assert await other.reclaim(KEYS.inbound) == 0
    assert other_handler.seen == []


async def test_one_consumer_reads_many_streams_in_one_call():
    s = store()
    await bus.ingest(s, contact("acme"))
    await bus.ingest(s, contact("globex"))
    handler = Recorder()
    consumer = bus.Consumer(s, "routing", "w1", [Keys("acme").inbound, Keys("globex").inbound], handler, block_ms=1)
    await consumer.ensure_groups()
    assert await consumer.read() == 2
    assert {e.stream for e in handler.seen} == {Keys("acme").inbound, Keys("globex").inbound}


async def test_consumers_of_departed_processes_are_forgotten_but_not_their_pending_work():
    s = store()
    await bus.ingest(s, contact(body="m0"))
    await bus.ingest(s, contact(body="m1"))
    stuck = bus.Consumer(s, "routing", "stuck", [KEYS.inbound], Recorder(finish=lambda e: False), batch=1, block_ms=1)
    await stuck.ensure_groups()
    await stuck.read()  # keeps one entry pending
    gone = bus.Consumer(s, "routing", "gone", [KEYS.inbound], Recorder(), batch=1, block_ms=1)
    await gone.read()  # finished its work, then its process went away
    await asyncio.sleep(0.01)
    live = bus.Consumer(s, "routing", "live", [KEYS.inbound], Recorder(), block_ms=1)
    assert await live.forget_departed(KEYS.inbound, idle_ms=1) == ["gone"]
    names = {c["name"].decode() for c in await s.redis.xinfo_consumers(KEYS.inbound, "routing")}
    assert names == {"stuck"}


async def test_a_poison_entry_is_dead_lettered_even_among_many_entries_other_consumers_are_working_on():
    s = store()
    for n in range(10):
        await bus.ingest(s, contact(body=f"m{n}"))
    ids = [entry_id.decode() for entry_id, _ in await s.redis.xrange(KEYS.inbound)]
    crashed = bus.Consumer(s, "routing", "crashed", [KEYS.inbound], Recorder(finish=lambda e: False), block_ms=1)
    await crashed.ensure_groups()
    await crashed.read()
    # The first and last entries have failed before, many times; the ones between are
    # being worked on right now by a live consumer (delivered, not idle).
    for _ in range(3):
        await s.redis.xclaim(KEYS.inbound, "routing", "crashed", 0, [ids[0], ids[-1]])
    await asyncio.sleep(0.06)
    await s.redis.xclaim(KEYS.inbound, "routing", "live", 0, ids[1:-1])
    handler = Recorder(finish=lambda e: False)
    reclaimer = bus.Consumer(
        s, "routing", "r", [KEYS.inbound], handler, batch=2, claim_idle_ms=50, max_deliveries=3, block_ms=1
    )
    await reclaimer.reclaim(KEYS.inbound)
    dead = [fields[b"id"].decode() for _id, fields in await s.redis.xrange(KEYS.dead)]
    assert dead == [ids[0], ids[-1]]
    assert handler.seen == []


async def test_deferred_acknowledgements_ride_with_the_next_read():
    s = store()
    for n in range(2):
        await bus.ingest(s, contact(body=f"m{n}"))
    consumer = bus.Consumer(s, "routing", "w1", [KEYS.inbound], Recorder(), block_ms=1, defer_acks=True)
    await consumer.ensure_groups()
    assert await consumer.read() == 2
    assert await pending_count(s, KEYS.inbound, "routing") == 2  # finished, not yet acknowledged
    assert await consumer.read() == 0
    assert await pending_count(s, KEYS.inbound, "routing") == 0


async def test_deferred_acknowledgements_lost_in_a_crash_mean_a_redelivery_not_a_loss():
    s = store()
    await bus.ingest(s, contact(body="m0"))
    dying = bus.Consumer(s, "routing", "w1", [KEYS.inbound], Recorder(), block_ms=1, defer_acks=True)
    await dying.ensure_groups()
    assert await dying.read() == 1  # handled; the process dies before its next read
    survivor_handler = Recorder()
    survivor = bus.Consumer(s, "routing", "w2", [KEYS.inbound], survivor_handler, claim_idle_ms=0)
    assert await survivor.reclaim(KEYS.inbound) == 1
    assert [events.decode_inbound(e.payload).body for e in survivor_handler.seen] == ["m0"]


async def test_leftover_deferred_acknowledgements_are_flushed_on_the_way_out():
    s = store()
    await bus.ingest(s, contact(body="m0"))
    consumer = bus.Consumer(s, "routing", "w1", [KEYS.inbound], Recorder(), block_ms=1, defer_acks=True)
    await consumer.ensure_groups()
    await consumer.read()
    await consumer.flush_acks()
    assert await pending_count(s, KEYS.inbound, "routing") == 0


async def test_entries_with_the_same_id_on_two_streams_are_acknowledged_apart():
    # Two tenants' streams can hold the same id (added in the same millisecond): a
    # handler that finishes one of them must not get the other acknowledged too.
    s = store()
    ours, theirs = Keys("acme").outbound, Keys("bolt").outbound
    for stream in (ours, theirs):
        await s.redis.xadd(stream, {"e": b"x"}, id="5-1")
    recorder = Recorder(finish=lambda entry: entry.stream == ours)
    consumer = bus.Consumer(s, "g", "c1", [ours, theirs], recorder, block_ms=1)
    await consumer.ensure_groups()
    assert await consumer.read() == 2
    assert sorted(e.stream for e in recorder.seen) == sorted([ours, theirs])
    assert (await pending_count(s, ours, "g"), await pending_count(s, theirs, "g")) == (0, 1)
