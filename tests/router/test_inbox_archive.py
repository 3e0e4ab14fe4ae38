"""The inbox over an archive: a conversation evicted from Redis reads as before, on its
page, in the customer's history and in the supervisors' search."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from ops.redis_server import free_port
from router import agents, bus, events
from router.records.archive import Archive
from router.store import text
from tests.factories import PROMISE
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture
from workers import archive as archive_worker
from workers.dispatch import Dispatcher

DAY_MS = 86_400_000


@pytest.fixture
async def inbox(archive_url: str) -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    w.store.archive = await Archive.open(archive_url, size=2)
    try:
        async with server:
            yield Inbox(w, server)
    finally:
        await w.store.archive.close()


async def evicted_conversation(inbox: Inbox, address: str, body: str) -> str:
    """A conversation answered, closed, archived and then evicted from Redis as the hot window passed."""
    w = inbox.world
    conversation = await w.assigned_to("amy", address=address, body=body)
    await agents.reply(w.store, w.tenant, "amy", conversation, "Thanks, we will call you")
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
    rows = await w.store.redis.xrange(w.keys.outbound)
    await Dispatcher(w.store).handle([bus.Entry(w.keys.outbound, text(i), f[b"e"]) for i, f in rows])
    entries = [bus.Entry(w.keys.events, text(i), f[b"e"]) for i, f in await w.store.redis.xrange(w.keys.events)]
    await archive_worker.write_batch(w.store, entries)
    outcomes = await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)
    assert outcomes.get("evicted") == 1
    assert not await w.store.redis.exists(w.keys.conversation(conversation))
    await w.store.redis.xtrim(w.keys.events, maxlen=0)  # its events trimmed too, as a week later
    return conversation


async def test_an_evicted_conversation_reads_as_before_on_its_page_and_in_the_customers_history(
    inbox: Inbox,
) -> None:
    old = await evicted_conversation(inbox, "+15551230001", "My meter is broken")
    new = await inbox.world.assigned_to("amy", address="+15551230001", body="Still broken")
    client, _token = await logged_in(inbox, "amy")
    async with client:
        response = await client.get(f"/inbox/t/acme/c/{old}")
        assert response.status == 200
        page = await response.text()
        assert "My meter is broken" in page and "Thanks, we will call you" in page
        assert re.search(r'<span class="status"[^>]*>sent</span>', page)
        current = await (await client.get(f"/inbox/t/acme/c/{new}")).text()
        threads = current[current.index('<div class="thread') :]  # the conversation pane's history
        assert threads.index("My meter is broken") < threads.index("Still broken")  # one history, oldest first
        assert f'<a href="/inbox/t/acme/c/{old}">Earlier conversation</a>' in threads
        live = await (await client.get(f"/inbox/t/acme/c/{old}/messages.json")).json()
        assert [e["body"] for e in live["entries"]] == ["My meter is broken", "Thanks, we will call you"]
        assert set(live["statuses"].values()) == {"sent"}


async def test_the_supervisors_search_finds_archived_conversations(inbox: Inbox) -> None:
    old = await evicted_conversation(inbox, "+15551230002", "电话号码不对")
    client, _token = await logged_in(inbox, "sue")
    async with client:

        async def hits(**params: str) -> list[str]:
            response = await client.get("/inbox/search", params={"go": "1", "tenant": "acme", **params})
            assert response.status == 200
            return re.findall(r'<tr data-conversation="([^"]+)"', await response.text())

        assert await hits(address="+15551230002") == [old]
        assert await hits(text="号码") == [old]  # a substring: Chinese has no spaces between words
        assert await hits(text="call") == [old]  # a word of the reply
        assert await hits(disposition="promise_to_pay") == [old]
        assert await hits(disposition="resolved") == []
        assert await hits(agent="amy") == [old]  # by agent and queue too, across all history
        assert await hits(agent="zoe") == []
        page = await (await client.get("/inbox/search", params={"go": "1", "tenant": "acme", "agent": "amy"})).text()
        assert '<h2 id="total">1 conversation</h2>' in page
        assert (await client.get("/inbox/search", params={"go": "1", "page": "0"})).status == 400


async def test_an_evicted_conversation_answers_503_archive_unavailable_while_its_database_is_away(
    inbox: Inbox,
) -> None:
    old = await evicted_conversation(inbox, "+15551230003", "My meter is broken")
    hot = await inbox.world.assigned_to("amy", address="+15551230003", body="Still broken")
    working = inbox.world.store.archive
    inbox.world.store.archive = await Archive.connect(f"postgresql://contactrouter@127.0.0.1:{free_port()}/gone")
    try:
        client, _token = await logged_in(inbox, "amy")
        async with client:
            response = await client.get(f"/inbox/t/acme/c/{old}")
            assert response.status == 503
            assert "archive unavailable" in await response.text()
            assert response.headers["Retry-After"]
            again = await client.get(f"/inbox/t/acme/c/{old}/messages.json")  # at once: it failed a moment ago
            assert again.status == 503
            page = await client.get(f"/inbox/t/acme/c/{hot}")  # what Redis holds still opens
            assert page.status == 200 and "Still broken" in await page.text()
    finally:
        await inbox.world.store.archive.close()
        inbox.world.store.archive = working
