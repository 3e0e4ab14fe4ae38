"""Web chat in the inbox: the visitor's typing reaches the agent holding the chat live,
the agent's typing and read marks reach the visitor's tabs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.webchat import signals, transcript
from router import conversations, events
from tests.router.test_inbox_live import next_event, no_event
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture

VISITOR = "v-3f1c2a"


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


async def chat_held_by_amy(inbox: Inbox) -> str:
    return await inbox.world.assigned_to("amy", channel="webchat", address=VISITOR, body="anyone there?")


async def shown_to_visitor(inbox: Inbox) -> list[transcript.ChatItem]:
    rows = await inbox.world.store.redis.xrange(inbox.world.keys.webchat_live)
    return [transcript.decode(fields[b"e"]) for _id, fields in rows if fields[b"v"].decode() == VISITOR]


async def test_the_visitors_typing_reaches_the_agent_holding_the_chat_only(inbox: Inbox) -> None:
    conversation = await chat_held_by_amy(inbox)
    amy, _ = await logged_in(inbox, "amy")
    zoe, _ = await logged_in(inbox, "zoe")
    async with amy, zoe, amy.ws_connect("/inbox/live") as amy_socket, zoe.ws_connect("/inbox/live") as zoe_socket:
        await next_event(amy_socket, "hello")
        await next_event(zoe_socket, "hello")
        signal = signals.VisitorSignal(
            type="typing", visitor=VISITOR, conversation=conversation, at=events.now_ms(), active=True
        )
        await signals.from_visitor(inbox.world.store, "acme", signal)
        typing = await next_event(amy_socket, "visitor_typing")
        assert (typing["conversation"], typing["active"]) == (conversation, True)
        await no_event(zoe_socket)


async def test_the_agents_typing_is_shown_to_the_visitor(inbox: Inbox) -> None:
    conversation = await chat_held_by_amy(inbox)
    client, token = await logged_in(inbox, "amy")
    async with client:
        url = f"/inbox/t/acme/c/{conversation}/typing"
        response = await client.post(url, json={"active": True}, headers={"X-CSRF-Token": token})
        assert response.status == 204
        assert (await client.post(url, json={"active": True})).status == 403  # no CSRF header
        assert (await client.post(url, data="yes", headers={"X-CSRF-Token": token})).status == 400
    typing = [item for item in await shown_to_visitor(inbox) if item.type == "typing"]
    assert [(item.active, item.agent) for item in typing] == [(True, "Amy Adams")]


async def test_typing_marks_are_only_for_a_web_chat_one_holds(inbox: Inbox) -> None:
    w = inbox.world
    chat = await chat_held_by_amy(inbox)
    sms = await w.assigned_to("zoe", address="+15551230000")
    client, token = await logged_in(inbox, "zoe")
    async with client:
        for conversation in (chat, sms):  # amy's chat; zoe's own, but an SMS
            response = await client.post(
                f"/inbox/t/acme/c/{conversation}/typing", json={"active": True}, headers={"X-CSRF-Token": token}
            )
            assert response.status == 409
    assert await shown_to_visitor(inbox) == []


async def test_opening_the_chat_marks_the_visitors_messages_read_once(inbox: Inbox) -> None:
    conversation = await chat_held_by_amy(inbox)
    [entry] = await conversations.history(inbox.world.store, "acme", conversation)
    client, _token = await logged_in(inbox, "amy")
    async with client:
        await client.get(f"/inbox/t/acme/c/{conversation}")
        await client.get(f"/inbox/t/acme/c/{conversation}")  # a reload sends no second mark
    reads = [item for item in await shown_to_visitor(inbox) if item.type == "read"]
    assert [item.up_to for item in reads] == [entry.id]
