"""Retention and erasure: the archive deletes what is older than a tenant keeps, and one
customer on request, everywhere, leaving an audit entry that says what went, when and by
whom."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from router import agents, conversations, events
from router.records import erasure
from router.records.archive import Archive
from router.store import text
from tests.factories import World, world
from tests.router.test_records_archive import DAY_MS, DEPLOYMENT, closed_conversation, events_entries
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


def count(url: str, table: str, where: str = "TRUE") -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


async def archive_and_evict(w: World, *, days_later: float = 8) -> None:
    await archive_worker.write_batch(w.store, await events_entries(w))
    await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + int(days_later * DAY_MS))


async def test_retention_deletes_what_closed_before_the_tenants_period_and_keeps_the_rest(
    w: World, archive_url: str
) -> None:
    old = await closed_conversation(w, address="+15551230001")
    await archive_and_evict(w)
    recent = await closed_conversation(w, address="+15551230002")
    await archive_worker.write_batch(w.store, await events_entries(w))

    later = events.now_ms() + 400 * DAY_MS  # both closed more than a year before
    assert await archive_worker.expire(w.store, w.tenant.id, retention_days=0, now_ms=later) == {}  # kept for ever
    gone = await archive_worker.expire(w.store, w.tenant.id, retention_days=365, now_ms=later)

    assert gone["conversations"] == 1  # the one Redis still holds is deleted after it leaves Redis
    assert count(archive_url, "conversations") == 1
    assert count(archive_url, "messages", f"conversation = '{old}'") == 0
    assert count(archive_url, "events", f"conversation = '{old}'") == 0
    assert count(archive_url, "messages", f"conversation = '{recent}'") == 3
    with pytest.raises(conversations.NotFound):
        await conversations.get(w.store, w.tenant.id, old)


async def test_erasure_removes_a_customer_from_redis_and_the_archive_and_leaves_an_audit_entry(
    w: World, archive_url: str
) -> None:
    evicted = await closed_conversation(w, address="+15551230001", body="my old meter")
    await archive_and_evict(w)
    hot = await closed_conversation(w, address="+15551230001", body="my new meter")
    other = await closed_conversation(w, address="+15551230002", body="someone else")
    await archive_worker.write_batch(w.store, await events_entries(w))
    customer = (await conversations.get(w.store, w.tenant.id, hot))["customer"]
    other_customer = (await conversations.get(w.store, w.tenant.id, other))["customer"]

    counts = await erasure.erase(w.store, w.tenant.id, customer, by="dpo@acme.example", reason="request 42")

    assert counts["conversations"] == 2 and counts["identities"] == 1 and counts["customers"] == 1
    assert counts["redis_conversations"] == 1
    for conversation in (evicted, hot):
        with pytest.raises(conversations.NotFound):
            await conversations.get(w.store, w.tenant.id, conversation)
    left = [text(k) for k in await w.store.redis.keys(f"{w.keys.base}:*") if customer in text(k) or hot in text(k)]
    assert left == []
    assert not await w.store.redis.hget(w.keys.identities, "phone:+15551230001")
    assert count(archive_url, "conversations", f"customer = '{customer}'") == 0
    assert count(archive_url, "customers", f"id = '{customer}'") == 0
    assert count(archive_url, "identities", f"customer = '{customer}'") == 0
    assert count(archive_url, "messages", "body LIKE '%meter%'") == 0
    assert (await conversations.get(w.store, w.tenant.id, other))["customer"] == other_customer  # untouched
    [audit] = await w.store.archive.erasures(w.tenant.id)
    assert (audit["customer"], audit["erased_by"], audit["reason"]) == (customer, "dpo@acme.example", "request 42")
    assert audit["erased"] == counts


async def test_a_customer_with_an_open_conversation_is_not_erased(w: World) -> None:
    conversation = await w.assigned_to("amy", address="+15551230001", body="still talking")
    customer = (await w.conversation(conversation))["customer"]
    with pytest.raises(erasure.ErasureRefused, match="close it"):
        await erasure.erase(w.store, w.tenant.id, customer, by="dpo")
    assert await w.conversation(conversation)
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    await erasure.erase(w.store, w.tenant.id, customer, by="dpo")
    assert await w.conversation(conversation) == {}


async def test_erasure_needs_someone_to_answer_for_it(w: World) -> None:
    with pytest.raises(erasure.ErasureRefused, match="--by"):
        await erasure.erase(w.store, w.tenant.id, "01CUSTOMER", by="")
    with pytest.raises(erasure.ErasureRefused, match="no customer"):
        await erasure.erase(w.store, w.tenant.id, "01NOSUCHCUSTOMER", by="dpo")
