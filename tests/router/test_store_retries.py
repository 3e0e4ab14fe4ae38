"""The store's client sends a command again when the connection dropped before its
answer arrived. Writes that are not safe to repeat carry a marker, so a repeat has no
second effect; loops ride out an outage with one warning and a backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from router import bus, conversations, events
from router.keys import ROUTING_GROUP, Keys
from router.store import Store, StoreOutage
from tests.factories import world

KEYS = Keys("acme")


def lose_one_answer(monkeypatch: pytest.MonkeyPatch, lost_when) -> list[object]:
    """Redis runs the command; the first answer matching `lost_when` never arrives."""
    original = Connection.read_response
    lost: list[object] = []

    async def read_response(self: Connection, *args: object, **kwargs: object) -> object:
        answer = await original(self, *args, **kwargs)
        if not lost and lost_when(answer):
            lost.append(answer)
            raise RedisConnectionError("Connection closed by server.")
        return answer

    monkeypatch.setattr(Connection, "read_response", read_response)
    return lost


async def open_conversation(store: Store) -> None:
    await store.redis.hset(
        KEYS.conversation("c1"),
        mapping={"channel": "sms", "last_channel": "sms", "last_address": "+15551230000", "customer": "u1"},
    )
    await store.redis.hset(KEYS.identities, "phone:+15551230000", "u1")  # the customer's own number


async def test_a_reply_without_a_key_whose_answer_was_lost_is_sent_once(real_store: Store, monkeypatch):
    await open_conversation(real_store)
    # the script's answer: [1, the message]
    lost = lose_one_answer(monkeypatch, lambda answer: isinstance(answer, list) and answer[:1] == [1])

    message = await conversations.send_reply(real_store, "acme", "c1", "amy", "On its way")

    monkeypatch.undo()
    assert lost, "the transaction ran and its answer was dropped"
    assert await real_store.redis.xlen(KEYS.outbound) == 1
    assert await real_store.redis.xlen(KEYS.events) == 1
    assert [e.id for e in await conversations.history(real_store, "acme", "c1")] == [message.id]


async def test_a_note_whose_answer_was_lost_is_added_once(real_store: Store, monkeypatch):
    await open_conversation(real_store)
    # the script's answer: [1, the note]
    lost = lose_one_answer(monkeypatch, lambda answer: isinstance(answer, list) and answer[:1] == [1])

    note = await conversations.add_note(real_store, "acme", "c1", "amy", "Called back, no answer")

    monkeypatch.undo()
    assert lost
    assert [(e.id, e.kind) for e in await conversations.history(real_store, "acme", "c1")] == [(note.id, "note")]


async def test_a_note_resubmitted_with_its_key_is_added_once():
    w = await world()
    await open_conversation(w.store)
    first = await conversations.add_note(w.store, "acme", "c1", "amy", "Promised to pay", idempotency_key="k1")
    again = await conversations.add_note(w.store, "acme", "c1", "amy", "Promised to pay", idempotency_key="k1")
    assert again == first
    assert len(await conversations.history(w.store, "acme", "c1")) == 1


def opted_out(provider_id: str) -> events.OptedOut:
    return events.OptedOut(
        tenant="acme", occurred_at=1, channel="sms", direction="in", provider_id=provider_id, address="+15551230000"
    )


async def test_an_event_published_again_with_its_provider_id_is_counted_once(real_store: Store, monkeypatch):
    """An opt-out counts in reports: neither a lost answer nor the provider's retried
    webhook may append it twice."""
    lost = lose_one_answer(monkeypatch, lambda answer: isinstance(answer, list) and answer[:1] == [1])
    first = await bus.publish(real_store, KEYS.events, opted_out("SM1"))  # the script's answer: [1, id]
    monkeypatch.undo()
    retried_webhook = await bus.publish(real_store, KEYS.events, opted_out("SM1"))
    assert lost and first == retried_webhook
    assert await real_store.redis.xlen(KEYS.events) == 1
    await bus.publish(real_store, KEYS.events, opted_out("SM2"))
    assert await real_store.redis.xlen(KEYS.events) == 2


async def test_an_event_with_no_provider_id_is_deduplicated_only_by_a_given_key():
    w = await world()
    notice = events.Queued(tenant="acme", occurred_at=1, queue="support", conversation="c1")
    await bus.publish(w.store, KEYS.events, notice)
    await bus.publish(w.store, KEYS.events, notice)
    assert await w.store.redis.xlen(KEYS.events) == 2  # no key: appended as is
    assert await bus.publish(w.store, KEYS.events, notice, dedup="q1") == await bus.publish(
        w.store, KEYS.events, notice, dedup="q1"
    )
    assert await w.store.redis.xlen(KEYS.events) == 3


def test_an_outage_backs_off_exponentially_up_to_a_cap_and_warns_once(caplog):
    outage = StoreOutage("worker", first_s=0.1, cap_s=1.0)
    caplog.set_level(logging.INFO)
    waits = [outage.failed(RedisConnectionError("refused")) for _ in range(6)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    outage.recovered()
    outage.recovered()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("worker: store unreachable, retrying (attempt 1, next in 0.1 s)")
    assert lines[1].startswith("worker: store back after")
    assert outage.failed(RedisConnectionError("refused")) == 0.1  # a new outage starts over


async def test_a_consumer_rides_out_an_outage_without_a_traceback_per_attempt(monkeypatch, caplog):
    w = await world()
    back = asyncio.Event()
    attempts = 0

    async def read(streams=None) -> int:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        back.set()
        await asyncio.sleep(0.01)  # as a blocking read would
        return 0

    async def handle(entries):
        return set()

    monkeypatch.setattr(bus, "StoreOutage", lambda what: StoreOutage(what, first_s=0.01, cap_s=0.02))
    consumer = bus.Consumer(w.store, ROUTING_GROUP, "r1", [KEYS.inbound], handle)
    monkeypatch.setattr(consumer, "read", read)
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(back.wait(), 5)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in caplog.records if "store unreachable, retrying" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "store back" in r.getMessage()]) == 1


async def test_a_consumer_whose_group_vanished_creates_it_again_and_reads_on(caplog):
    """A Redis restarted without its data (no AOF) has no consumer groups: every read
    failed with NOGROUP, a traceback a second, until someone restarted the workers."""
    w = await world()
    seen: list[bus.Entry] = []
    got = asyncio.Event()

    async def handle(entries):
        seen.extend(entries)
        got.set()
        return set(entries)

    consumer = bus.Consumer(w.store, ROUTING_GROUP, "r1", [KEYS.inbound], handle, block_ms=10)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(0.05)
    await w.store.redis.delete(KEYS.inbound)  # the stream, and its group, gone
    await w.store.redis.xadd(KEYS.inbound, {"e": b"x"})
    await asyncio.wait_for(got.wait(), 5)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert [e.payload for e in seen] == [b"x"]
    assert len([r for r in caplog.records if "is gone" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
