"""What else follows a conversation into the archive: a merge of two customers reaches the
conversations only the archive holds, and an email conversation's thread references
(the threads hash) leave Redis with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from channels.email import threads
from router import agents, conversations, customers, events
from router.records.archive import Archive
from router.store import text
from tests.factories import World, world
from tests.router.test_records_archive import DAY_MS, DEPLOYMENT, closed_conversation, events_entries, send_outbound
from workers import archive as archive_worker


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(DEPLOYMENT)
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


async def archive_and_evict(w: World) -> dict[str, int]:
    await archive_worker.write_batch(w.store, await events_entries(w))
    return await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)


async def test_a_merge_moves_the_conversations_only_the_archive_holds(w: World, archive_url: str) -> None:
    kept = await closed_conversation(w, address="+15551230001", body="first number")
    absorbed = await closed_conversation(w, address="+15551230002", body="second number")
    assert (await archive_and_evict(w))["evicted"] == 2
    keep = (await conversations.get(w.store, w.tenant.id, kept))["customer"]
    absorb = (await conversations.get(w.store, w.tenant.id, absorbed))["customer"]

    await customers.merge(w.store, w.tenant.id, keep, absorb)
    await customers.merge(w.store, w.tenant.id, keep, absorb)  # again: nothing more moves

    assert (await conversations.get(w.store, w.tenant.id, absorbed))["customer"] == keep
    history = await conversations.customer_history(w.store, w.tenant.id, keep)
    assert [c for c, _entries in history] == [kept, absorbed]
    with psycopg.connect(archive_url) as conn:
        assert conn.execute("SELECT count(*) FROM conversations WHERE customer = %s", (absorb,)).fetchone()[0] == 0
        assert conn.execute("SELECT customer FROM identities WHERE identity = 'phone:+15551230002'").fetchone() == (
            keep,
        )
        assert conn.execute("SELECT count(*) FROM customers WHERE id = %s", (absorb,)).fetchone()[0] == 0


async def test_an_email_conversations_thread_references_leave_redis_with_it(w: World) -> None:
    mail = await w.assigned_to("amy", channel="email", address="ann@example.com", provider_id="<m1@example.com>")
    await agents.reply(w.store, w.tenant, "amy", mail, "We are on it")
    token = await threads.conversation_token(w.store, w.tenant.id, mail)
    await agents.close(w.store, w.tenant, "amy", mail, "resolved")
    await agents.end_wrapup(w.store, w.tenant, "amy", mail)
    await send_outbound(w)
    # As the SMTP relay records a reply (the sandbox names it sandbox-<id>): its Message-ID is its provider id.
    [reply] = [e.id for e in await conversations.history(w.store, w.tenant.id, mail) if e.kind == "out"]
    await threads.remember_sent(w.store, w.tenant.id, mail, "<ours@acme.example>", reply)
    await w.store.redis.hset(w.keys.delivery(reply), "provider_id", "<ours@acme.example>")
    other = await w.assigned_to("amy", channel="email", address="bob@example.com", provider_id="<m2@example.com>")
    before = {text(k): text(v) for k, v in (await w.store.redis.hgetall(w.keys.threads)).items()}
    assert {"<m1@example.com>", f"token:{token}", "<ours@acme.example>"} <= {k for k, v in before.items() if v == mail}

    assert (await archive_and_evict(w))["evicted"] == 1

    after = {text(k): text(v) for k, v in (await w.store.redis.hgetall(w.keys.threads)).items()}
    assert mail not in after.values()
    assert after.get("<m2@example.com>") == other  # the open one's stay


async def test_a_calls_recordings_are_archived_beside_it_and_stay_for_their_own_retention(
    w: World, archive_url: str
) -> None:
    conversation = await closed_conversation(w, address="+15551230003", body="a call")
    started = events.now_ms()
    # as channels/voice/recording.py keeps a recording Twilio reported completed
    await w.store.redis.hset(
        w.keys.recording("RE42"),
        mapping={
            "sid": "RE42",
            "conversation": conversation,
            "call": "CA1",
            "state": "completed",
            "url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE42",
            "duration_s": "93",
            "started_at": str(started),
        },
    )
    await w.store.redis.zadd(w.keys.recordings, {"RE42": started})
    await w.store.redis.zadd(w.keys.conversation_recordings(conversation), {"RE42": started})

    assert (await archive_and_evict(w))["evicted"] == 1

    with psycopg.connect(archive_url) as conn:
        row = conn.execute("SELECT conversation, url, duration_s FROM recordings WHERE id = 'RE42'").fetchone()
    assert row == (conversation, "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE42", 93)
    assert await w.store.redis.exists(w.keys.recording("RE42"))  # its own retention deletes it, at Twilio too
