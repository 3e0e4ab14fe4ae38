"""`/inbox/live`: a session-authenticated websocket that pushes each agent the
events about them (offers, messages, transfers, closes), and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from router import agents
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture

TIMEOUT = 5.0


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


async def next_event(socket: aiohttp.ClientWebSocketResponse, kind: str) -> dict:
    """The next event of a kind on the socket (earlier ones of other kinds are passed over)."""
    while True:
        message = await asyncio.wait_for(socket.receive_json(), TIMEOUT)
        if message["kind"] == kind:
            return message


async def no_event(socket: aiohttp.ClientWebSocketResponse, wait: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        message = await asyncio.wait_for(socket.receive_json(), wait)
        raise AssertionError(f"unexpected event {message}")


async def test_an_offer_reaches_the_agent_live(inbox: Inbox) -> None:
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client, client.ws_connect("/inbox/live") as socket:
        hello = await next_event(socket, "hello")
        assert hello["tenants"] == ["acme"]
        await w.available("amy")
        conversation = await w.arrive(body="never in the event")
        offer = await next_event(socket, "reserved")
        assert (offer["conversation"], offer["agent"], offer["channel"]) == (conversation, "amy", "sms")
        assert offer["expires_at"] > 0 and "never in the event" not in str(offer)
        await w.arrive(body="a second message, now that amy holds the conversation")
        message = await next_event(socket, "message")
        assert message["conversation"] == conversation and message["direction"] == "in"


async def test_a_colleague_sees_a_transfer_arrive_and_the_first_agent_does_not_see_theirs(inbox: Inbox) -> None:
    w = inbox.world
    await w.available("amy")
    conversation = await w.arrive()
    await w.accept_offer("amy")
    await w.available("zoe")
    zoe, _ = await logged_in(inbox, "zoe")
    amy, _ = await logged_in(inbox, "amy")
    async with zoe, amy, zoe.ws_connect("/inbox/live") as zoe_socket, amy.ws_connect("/inbox/live") as amy_socket:
        await next_event(zoe_socket, "hello")
        await next_event(amy_socket, "hello")
        await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe", note="over to you")
        transferred = await next_event(zoe_socket, "transferred")
        assert transferred["to_agent"] == "zoe"
        offer = await next_event(zoe_socket, "reserved")
        assert offer["conversation"] == conversation and offer["agent"] == "zoe"
        await next_event(amy_socket, "transferred")  # amy handed it over: she hears about that
        await no_event(amy_socket)  # but not about zoe's offer


async def test_an_agent_hears_nothing_of_another_tenant(inbox: Inbox) -> None:
    from tests.factories import contact

    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client, client.ws_connect("/inbox/live") as socket:
        await next_event(socket, "hello")
        globex = w.deployment.tenant("globex")
        await agents.set_presence(w.store, globex, "gus", "available")
        await w.deliver(contact("globex"))
        await no_event(socket)


async def test_a_supervisor_hears_everything_in_their_tenants(inbox: Inbox) -> None:
    w = inbox.world
    client, _token = await logged_in(inbox, "sue")
    async with client, client.ws_connect("/inbox/live") as socket:
        await next_event(socket, "hello")
        await w.available("zoe")
        presence = await next_event(socket, "presence")
        assert (presence["agent"], presence["presence"]) == ("zoe", "available")


async def test_the_socket_needs_a_session_and_the_sites_own_origin(inbox: Inbox) -> None:
    async with inbox.client() as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect("/inbox/live")
        assert refused.value.status == 401
    client, _token = await logged_in(inbox, "amy")
    async with client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/inbox/live", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403


async def test_followers_stop_when_the_last_socket_of_a_tenant_closes(inbox: Inbox) -> None:
    from router.app.inbox import INBOX
    from router.app.inbox.live import HUB

    hub = inbox.server.app[INBOX][HUB]
    client, _token = await logged_in(inbox, "amy")
    async with client:
        async with client.ws_connect("/inbox/live") as socket:
            await next_event(socket, "hello")
            assert not hub.followers["acme"].done()
        for _ in range(50):
            if "acme" not in hub.followers:
                break
            await asyncio.sleep(0.02)
        assert "acme" not in hub.followers


async def test_a_delivery_report_reaches_the_agent_holding_the_conversation(inbox: Inbox) -> None:
    from router import bus
    from workers.dispatch import Dispatcher

    w = inbox.world
    await w.available("amy")
    conversation = await w.arrive()
    await w.accept_offer("amy")
    message = await agents.reply(w.store, w.tenant, "amy", conversation, "on it")
    amy, _ = await logged_in(inbox, "amy")
    zoe, _ = await logged_in(inbox, "zoe")
    async with amy, zoe, amy.ws_connect("/inbox/live") as amy_socket, zoe.ws_connect("/inbox/live") as zoe_socket:
        await next_event(amy_socket, "hello")
        await next_event(zoe_socket, "hello")
        [(entry_id, fields)] = await w.store.redis.xrange(w.keys.outbound)
        await Dispatcher(w.store).handle([bus.Entry(w.keys.outbound, entry_id.decode(), fields[b"e"])])
        report = await next_event(amy_socket, "delivery")
        assert (report["conversation"], report["message"], report["status"]) == (conversation, message.id, "sent")
        await no_event(zoe_socket)
        statuses = (await (await amy.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json())["statuses"]
        assert statuses == {message.id: "sent"}


@pytest.mark.parametrize("end", ["passwd", "remove"])
async def test_the_socket_closes_when_its_session_ends_and_no_notice_reaches_it_after(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    from router.app.inbox import accounts, live

    monkeypatch.setattr(live, "SESSION_CHECK_S", 0.05)
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client, client.ws_connect("/inbox/live") as socket:
        await next_event(socket, "hello")
        if end == "passwd":
            await accounts.set_password(w.store, "amy", "a brand new long password")
        else:
            await accounts.remove(w.store, "amy")
        assert await next_event(socket, "session_ended") == {"kind": "session_ended"}
        closed = await asyncio.wait_for(socket.receive(), TIMEOUT)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == live.SESSION_ENDED
        await w.available("amy")
        await w.arrive(body="after the session ended")
    assert socket.closed


async def test_a_socket_whose_session_lasts_stays_open(inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from router.app.inbox import live

    monkeypatch.setattr(live, "SESSION_CHECK_S", 0.05)
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client, client.ws_connect("/inbox/live") as socket:
        await next_event(socket, "hello")
        await asyncio.sleep(0.3)  # several checks of the session
        await w.available("amy")
        await w.arrive()
        assert (await next_event(socket, "reserved"))["agent"] == "amy"


async def test_a_quiet_socket_beats_so_the_page_can_tell_a_dead_connection(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser cannot see the protocol's pings: without a word now and then, a page could
    not tell a quiet connection from one that died without closing."""
    from router.app.inbox import live

    monkeypatch.setattr(live, "BEAT_S", 0.05)
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client, client.ws_connect("/inbox/live") as socket:
        assert (await next_event(socket, "hello"))["beat_s"] == 0.05
        assert (await next_event(socket, "beat"))["now"] > 0
        await w.available("amy")
        await w.arrive()
        assert (await next_event(socket, "reserved"))["agent"] == "amy"  # beats do not hold notices back
        await next_event(socket, "beat")
