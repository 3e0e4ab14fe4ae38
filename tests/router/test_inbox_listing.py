"""The desk's list: tabs (mine; queue and all for supervisors), sorts, filters, pages and
the counts on each tab, all from /inbox/state.json."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router import agents
from router.app.inbox import listing
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


async def test_an_agent_sees_their_own_list_with_unread_counts_and_cannot_open_the_supervisors_tabs(
    inbox: Inbox,
) -> None:
    w = inbox.world
    first = await w.assigned_to("amy", address="+15551230001", body="first")
    await w.assigned_to("amy", channel="email", address="ana@example.com", body="second")
    client, _token = await logged_in(inbox, "amy")
    async with client:
        await client.get(f"/inbox/t/acme/c/{first}")  # read
        data = await (await client.get("/inbox/state.json")).json()
        assert [c["preview"] for c in data["conversations"]] == ["second", "first"]  # newest activity first
        assert data["list"]["counts"]["mine"] == 1  # one unread
        assert data["list"]["tabs"] == ["mine"]
        sneaky = await (await client.get("/inbox/state.json", params={"tab": "all"})).json()
        assert sneaky["list"]["tab"] == "mine" and len(sneaky["list"]["rows"]) == 2
        emails = await (await client.get("/inbox/state.json", params={"channel": "email"})).json()
        assert [c["preview"] for c in emails["list"]["rows"]] == ["second"] and emails["list"]["total"] == 1


async def test_a_supervisor_sees_the_waiting_queue_and_every_open_conversation_sorted_and_filtered(
    inbox: Inbox,
) -> None:
    w = inbox.world
    held = await w.assigned_to("zoe", address="+15551230001", body="held by zoe")
    await agents.set_presence(w.store, w.tenant, "zoe", "away", "lunch")  # the next ones wait
    await w.arrive(address="+15551230002", body="waits long", ago=300)
    await w.arrive(channel="email", address="bo@example.com", body="waits a bit", ago=60)
    client, _token = await logged_in(inbox, "sue")
    async with client:
        queue = await (await client.get("/inbox/state.json", params={"tab": "queue", "sort": "waiting"})).json()
        assert [c["preview"] for c in queue["list"]["rows"]] == ["waits long", "waits a bit"]
        assert {c["state"] for c in queue["list"]["rows"]} == {"queued"}
        assert queue["list"]["counts"]["queue"] == 2 and queue["list"]["counts"]["all"] == 3
        everything = await (await client.get("/inbox/state.json", params={"tab": "all"})).json()
        assert {c["conversation"] for c in everything["list"]["rows"]} >= {held}
        assert next(c for c in everything["list"]["rows"] if c["conversation"] == held)["agent"] == "Zoe Zhang"
        assigned = await (await client.get("/inbox/state.json", params={"tab": "all", "state": "assigned"})).json()
        assert [c["conversation"] for c in assigned["list"]["rows"]] == [held]


async def test_the_list_pages_past_a_hundred_rows(inbox: Inbox) -> None:
    w = inbox.world
    for n in range(listing.PAGE + 5):
        await w.arrive(address=f"+1555123{n:04d}", body=f"message {n}")
    client, _token = await logged_in(inbox, "sue")
    async with client:
        first = await (await client.get("/inbox/state.json", params={"tab": "queue"})).json()
        second = await (await client.get("/inbox/state.json", params={"tab": "queue", "offset": "100"})).json()
    assert first["list"]["total"] == second["list"]["total"] == listing.PAGE + 5
    assert len(first["list"]["rows"]) == listing.PAGE and len(second["list"]["rows"]) == 5
    seen = {c["conversation"] for c in first["list"]["rows"]} | {c["conversation"] for c in second["list"]["rows"]}
    assert len(seen) == listing.PAGE + 5
