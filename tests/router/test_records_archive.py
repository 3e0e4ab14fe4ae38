"""The archive (router/records): conversations written to PostgreSQL idempotently,
evicted from Redis only when closed long enough and unchanged since their archive
commit, and read back transparently through router.conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from router import agents, bus, conversations, events
from router.keys import Keys
from router.records.archive import Archive
from router.store import text
from tests.factories import PROMISE, SUPPORT, World, world
from workers import archive as archive_worker
from workers.dispatch import Dispatcher

DAY_MS = 86_400_000
DEPLOYMENT = SUPPORT.replace(
    'entry = { default = "support" }', 'entry = { default = "support" }\ndispositions = ["resolved", "promise_to_pay"]'
)


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(DEPLOYMENT)
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


def tables(url: str) -> dict[str, list[tuple]]:
    """Every archived row, less the time each was (re)written: what an archive holds."""
    queries = {
        "customers": "SELECT tenant, id, name, channel_name, last_agent, record FROM customers ORDER BY id",
        "identities": "SELECT * FROM identities ORDER BY identity",
        "conversations": "SELECT tenant, id, customer, state, disposition, promise_amount, promise_date, created_at,"
        " closed_at, record, digest, evicted_at FROM conversations ORDER BY id",
        "messages": "SELECT tenant, id, conversation, position, kind, body, delivery_status FROM messages ORDER BY id",
        "events": "SELECT * FROM events ORDER BY entry",
    }
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


async def events_entries(w: World) -> list[bus.Entry]:
    rows = await w.store.redis.xrange(w.keys.events)
    return [bus.Entry(w.keys.events, text(i), fields[b"e"]) for i, fields in rows]


async def send_outbound(w: World) -> None:
    """The dispatcher sends what is queued (the sandbox keeps it): each reply gets its delivery record."""
    rows = await w.store.redis.xrange(w.keys.outbound)
    await Dispatcher(w.store).handle([bus.Entry(w.keys.outbound, text(i), f[b"e"]) for i, f in rows])


async def closed_conversation(w: World, address: str = "+15551230001", body: str = "My meter is broken") -> str:
    conversation = await w.assigned_to("amy", address=address, body=body)
    await agents.reply(w.store, w.tenant, "amy", conversation, "We are on it")
    await agents.note(w.store, w.tenant, "amy", conversation, "customer was polite")
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
    await send_outbound(w)
    return conversation


async def conversation_keys(w: World, conversation: str) -> list[str]:
    """The conversation's own keys that Redis still has (its record comes from the archive once evicted)."""
    record = await conversations.get(w.store, w.tenant.id, conversation)
    entries = await conversations.history(w.store, w.tenant.id, conversation)
    own = [w.keys.conversation(conversation), w.keys.conversation_log(conversation)]
    own += [w.keys.reservation(f"{conversation}.{n}") for n in range(1, int(record["attempts"]) + 1)]
    own += [w.keys.delivery(e.id) for e in entries if e.kind == "out"]
    return [key for key in own if await w.store.redis.exists(key)]


async def test_a_closed_conversation_is_archived_with_its_history_delivery_and_customer(
    w: World, archive_url: str
) -> None:
    conversation = await closed_conversation(w)
    done = await archive_worker.write_batch(w.store, await events_entries(w))
    assert done == set(await events_entries(w))

    rows = tables(archive_url)
    [archived] = rows["conversations"]
    assert archived[1:5] == (conversation, archived[2], "closed", "promise_to_pay")
    assert (str(archived[5]), str(archived[6])) == (PROMISE["promise_amount"], PROMISE["promise_date"])
    assert [(m[4], m[5], m[6]) for m in sorted(rows["messages"], key=lambda m: m[3])] == [
        ("in", "My meter is broken", ""),
        ("out", "We are on it", "sent"),
        ("note", "customer was polite", ""),
    ]
    assert [i[1:] for i in rows["identities"]] == [("phone:+15551230001", archived[2])]
    assert {e[2] for e in rows["events"]} >= {"queued", "message", "reserved", "accepted", "closed", "delivery"}
    assert len(rows["events"]) == len(await events_entries(w))


async def test_a_redelivered_or_replayed_batch_changes_nothing(w: World, archive_url: str) -> None:
    await closed_conversation(w)
    entries = await events_entries(w)
    await archive_worker.write_batch(w.store, entries)
    first = tables(archive_url)
    await archive_worker.write_batch(w.store, entries)  # the whole batch again, as after a crash
    await archive_worker.write_batch(w.store, list(reversed(entries[: len(entries) // 2])))  # a replay, in part
    assert tables(archive_url) == first


async def test_a_conversation_closed_past_the_hot_window_leaves_redis_and_reads_the_same(w: World) -> None:
    conversation = await closed_conversation(w)
    customer = (await w.conversation(conversation))["customer"]
    before = (
        await conversations.get(w.store, w.tenant.id, conversation),
        await conversations.history(w.store, w.tenant.id, conversation),
        await conversations.customer_history(w.store, w.tenant.id, customer),
    )
    await archive_worker.write_batch(w.store, await events_entries(w))
    assert await conversation_keys(w, conversation) != []

    outcomes = await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)

    assert outcomes == {"evicted": 1}
    assert await conversation_keys(w, conversation) == []
    assert await w.store.redis.zrange(w.keys.customer_conversations(customer), 0, -1) == []
    after = (
        await conversations.get(w.store, w.tenant.id, conversation),
        await conversations.history(w.store, w.tenant.id, conversation),
        await conversations.customer_history(w.store, w.tenant.id, customer),
    )
    assert after == before


async def test_nothing_is_evicted_within_the_hot_window_nor_while_open(w: World) -> None:
    closed = await closed_conversation(w)
    still_open = await w.assigned_to("amy", address="+15551230002", body="hello")
    await archive_worker.write_batch(w.store, await events_entries(w))

    assert await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 6 * DAY_MS) == {}
    assert await conversation_keys(w, closed) != []
    await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 30 * DAY_MS)
    assert await conversation_keys(w, closed) == []
    assert await conversation_keys(w, still_open) != []


async def test_a_conversation_changed_after_its_archive_is_archived_again_before_it_leaves(
    w: World, archive_url: str
) -> None:
    conversation = await closed_conversation(w)
    await archive_worker.write_batch(w.store, await events_entries(w))
    # A late delivery report moves the reply on after the archive wrote it (no batch has it yet).
    [reply] = [e for e in await conversations.history(w.store, w.tenant.id, conversation) if e.kind == "out"]
    await w.store.redis.hset(w.keys.delivery(reply.id), "status", "delivered")

    await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)

    assert await conversation_keys(w, conversation) == []
    statuses = {m[1]: m[6] for m in tables(archive_url)["messages"]}
    assert statuses[reply.id] == "delivered"


async def test_the_eviction_script_keeps_a_conversation_that_differs_from_the_archived_digest(w: World) -> None:
    from router import atomic
    from router.records import snapshot

    conversation = await closed_conversation(w)
    taken = await snapshot.read(w.store, w.tenant.id, conversation)
    assert taken is not None
    await conversations.add_note(w.store, w.tenant.id, conversation, "amy", "one more thing")  # after the snapshot

    async def evict() -> str:
        return await atomic.evict(
            w.store,
            w.tenant.id,
            conversation=conversation,
            held=taken.held,
            closed_before=events.now_ms() + DAY_MS,
            message_ids="\n".join(taken.replies),
            fields=taken.fields,
        )

    assert await evict() == "changed"
    assert await conversation_keys(w, conversation) != []
    taken = await snapshot.read(w.store, w.tenant.id, conversation)
    assert await evict() == "evicted"
    assert await evict() == "gone"


async def test_a_customer_writing_after_eviction_continues_with_their_whole_history(w: World) -> None:
    first = await closed_conversation(w, body="first time")
    await archive_worker.write_batch(w.store, await events_entries(w))
    await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)

    second = await w.assigned_to("amy", address="+15551230001", body="me again")

    assert second != first
    customer = (await w.conversation(second))["customer"]
    history = await conversations.customer_history(w.store, w.tenant.id, customer)
    assert [c for c, _ in history] == [first, second]
    assert [e.body for _, entries in history for e in entries if e.kind == "in"] == ["first time", "me again"]


async def test_without_an_archive_redis_keeps_everything(w: World) -> None:
    conversation = await closed_conversation(w)
    w.store.archive, archive = None, w.store.archive
    try:
        with pytest.raises(RuntimeError, match="DATABASE_URL"):
            await archive_worker.evict(w.store, w.tenant.id, hot_days=0)
        with pytest.raises(conversations.NotFound):
            await conversations.get(w.store, w.tenant.id, "01NOSUCHCONVERSATION00000")
        assert await conversation_keys(w, conversation) != []
    finally:
        w.store.archive = archive
    assert Keys(w.tenant.id).conversation(conversation) == w.keys.conversation(conversation)


async def test_the_archive_process_without_a_database_waits_instead_of_failing() -> None:
    import asyncio

    from router.settings import Settings

    made = await world(DEPLOYMENT)
    stop = asyncio.Event()
    running = asyncio.create_task(archive_worker.run(made.store, made.deployment, Settings(), stop))
    await asyncio.sleep(0)  # it started, and waits
    assert not running.done()
    stop.set()
    await running
    await made.store.close()
