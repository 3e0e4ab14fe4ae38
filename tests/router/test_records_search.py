"""Search across all history (router/records/search.py): every archived conversation,
however old, by queue, agent, address, customer, text (words, and substrings for Chinese
and Japanese), date range and disposition, a page at a time with the total, and never
another tenant's."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from router import agents, conversations
from router.records import search as records_search
from router.records.archive import Archive
from router.records.search import Filters, like_pattern
from tests.factories import World, deployment, world
from tests.router.test_records_archive import events_entries, send_outbound
from workers import archive as archive_worker

TENANT = """
[[tenants]]
id = "{id}"
entry = {{ default = "support", email = "billing" }}
dispositions = ["resolved", "callback"]

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
skills = {{ support = 1, billing = 1 }}

[[tenants.agents]]
id = "zoe"
skills = {{ support = 1, billing = 1 }}
"""


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(TENANT.format(id="acme") + TENANT.format(id="beta"))
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


def beta(w: World) -> World:
    """The same store, seen as the second tenant."""
    return World(w.store, deployment(TENANT.format(id="beta") + TENANT.format(id="acme")))


async def closed(w: World, agent: str, *, channel: str = "sms", address: str, body: str, disposition: str) -> str:
    conversation = await w.assigned_to(agent, channel=channel, address=address, body=body)
    await agents.reply(w.store, w.tenant, agent, conversation, "Thanks for writing")
    await agents.close(w.store, w.tenant, agent, conversation, disposition)
    await agents.end_wrapup(w.store, w.tenant, agent, conversation)
    await agents.set_presence(w.store, w.tenant, agent, "offline")  # the next contact goes to whom the test says
    await send_outbound(w)
    return conversation


async def archived(w: World) -> None:
    await archive_worker.write_batch(w.store, await events_entries(w))


async def ids(w: World, **filters) -> list[str]:
    page = await w.store.archive.search(w.tenant.id, Filters(**filters), limit=100)
    assert page.total == len(page.conversations)
    return page.conversations


async def test_search_by_queue_and_agent_with_the_other_filters(w: World) -> None:
    meter = await closed(w, "amy", address="+15551230001", body="My meter is broken", disposition="resolved")
    bill = await closed(
        w, "zoe", channel="email", address="ann@example.com", body="My bill is too high", disposition="callback"
    )
    await archived(w)

    assert await ids(w, queue="support") == [meter]
    assert await ids(w, queue="billing") == [bill]
    assert await ids(w, agent="zoe") == [bill]
    assert await ids(w, agent="amy", queue="billing") == []
    assert await ids(w, agent="amy", disposition="resolved", text="meter") == [meter]
    assert await ids(w, address="123000") == [meter]  # part of a number
    assert await ids(w, address="ann@example") == [bill]
    customer = (await conversations.get(w.store, w.tenant.id, bill))["customer"]
    assert await ids(w, customers=[customer]) == [bill]
    today = dt.datetime.now(dt.UTC)
    assert await ids(w, start=today - dt.timedelta(hours=1), end=today + dt.timedelta(hours=1)) == [bill, meter]
    assert await ids(w, end=today - dt.timedelta(days=1)) == []


async def test_text_is_found_as_words_and_as_chinese_and_japanese_substrings(w: World) -> None:
    chinese = await closed(w, "amy", address="+15551230001", body="电话号码不对", disposition="resolved")
    japanese = await closed(
        w, "amy", address="+15551230002", body="メーターの読み取りが間違っています", disposition="resolved"
    )
    latin = await closed(w, "amy", address="+15551230003", body="The reading is 100% wrong_ly", disposition="resolved")
    await archived(w)

    assert await ids(w, text="号码") == [chinese]
    assert await ids(w, text="読み取り") == [japanese]
    assert await ids(w, text="reading") == [latin]
    assert await ids(w, text="100%") == [latin]  # a wildcard of ILIKE is a character here
    assert await ids(w, text="0%w") == []
    assert like_pattern("a_b%") == "%a\\_b\\%%"


async def test_pages_come_newest_first_with_the_total(w: World) -> None:
    made = [
        await closed(w, "amy", address=f"+1555123000{n}", body=f"question {n}", disposition="resolved")
        for n in range(5)
    ]
    await archived(w)
    newest_first = list(reversed(made))

    pages = [await w.store.archive.search(w.tenant.id, Filters(), offset=offset, limit=2) for offset in (0, 2, 4, 6)]

    assert [p.total for p in pages] == [5, 5, 5, 5]
    assert [c for p in pages for c in p.conversations] == newest_first
    assert pages[-1].conversations == []


async def test_a_tenant_never_finds_another_tenants_conversations(w: World) -> None:
    other = beta(w)
    theirs = await closed(other, "amy", address="+15551230001", body="secret meter", disposition="resolved")
    ours = await closed(w, "amy", address="+15551230001", body="our meter", disposition="resolved")
    await archived(w)
    await archived(other)

    assert await ids(w, text="meter") == [ours]
    assert await ids(other, text="meter") == [theirs]
    assert await ids(w, address="+15551230001") == [ours]
    assert await ids(w, customers=[(await conversations.get(w.store, "beta", theirs))["customer"]]) == []


async def test_past_the_count_cap_the_total_says_more_and_pages_still_come(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_search, "COUNT_CAP", 2)
    made = [
        await closed(w, "amy", address=f"+1555123000{n}", body="my meter", disposition="resolved") for n in range(4)
    ]
    await archived(w)

    first = await w.store.archive.search(w.tenant.id, Filters(text="meter"), limit=3)
    last = await w.store.archive.search(w.tenant.id, Filters(text="meter"), offset=3, limit=3)
    few = await w.store.archive.search(w.tenant.id, Filters(text="meter", address="+15551230001"), limit=3)

    assert (first.total, first.more, first.conversations) == (2, True, list(reversed(made))[:3])
    assert last.conversations == [made[0]]
    assert (few.total, few.more, few.conversations) == (1, False, [made[1]])
