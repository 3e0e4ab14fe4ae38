"""The web chat websocket, spoken to as the widget speaks it (aiohttp's websocket client
against the real web app on a fresh embedded store)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.webchat import identity, signals, socket
from channels.webchat.live import QUEUE_SIZE, Tab
from channels.webchat.outbound import WebchatSender
from router import agents, bus, conversations, events, intake
from router.app import web
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.factories import World, route_inbound, world
from tests.router.test_routing_language import CANTONESE
from workers.dispatch import Dispatcher

SHOP = "https://shop.acme.example"
CUSTOMER_SECRET = "acme-identity-secret-0123456789"
KEYS = Keys("acme")

CHAT = """
[[tenants]]
id = "acme"
name = "Acme Energy"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
name = "Amy Pond"
skills = { support = 1, billing = 1 }

[tenants.webchat]
allowed_origins = ["https://shop.acme.example"]
identity_secret_env = "ACME_CHAT_SECRET"
{extra}

[tenants.webchat.limits]
message_bytes = 200
per_visitor_per_minute = 3
per_ip_per_minute = 5
{limits}

[[tenants]]
id = "globex"
entry = { default = "sales" }

[[tenants.queues]]
id = "sales"

[tenants.webchat]
allowed_origins = ["https://globex.example"]
"""


async def chat_world(extra: str = "", limits: str = "") -> World:
    """acme with a chat (its [tenants.webchat] plus `extra`, its limits plus `limits`), and globex."""
    text = CHAT.replace("{extra}", extra).replace("{limits}", limits)
    return await world(text, {"ACME_CHAT_SECRET": CUSTOMER_SECRET})


@asynccontextmanager
async def chat_server(w: World, settings: Settings | None = None) -> AsyncIterator[TestClient]:
    async with TestServer(web.application(w.store, w.deployment, settings or Settings())) as server:
        async with TestClient(server) as client:
            yield client


async def frame(ws: Any, kind: str = "") -> dict[str, Any]:
    """The next frame (of a kind, skipping others)."""
    while True:
        message = await ws.receive(timeout=3.0)
        assert message.type == WSMsgType.TEXT, f"socket ended: {message.type} {message.data!r} {message.extra!r}"
        data = json.loads(message.data)
        if not kind or data["type"] == kind:
            return data


async def open_chat(
    client: TestClient, tenant: str = "acme", *, origin: str = SHOP, headers: dict[str, str] | None = None, **hello: Any
):
    """A tab that said hello; returns (socket, welcome frame)."""
    ws = await client.ws_connect(f"/webchat/{tenant}/socket", headers={"Origin": origin, **(headers or {})})
    await ws.send_json({"type": "hello", **{k: v for k, v in hello.items() if v is not None}})
    return ws, await frame(ws)


async def say(ws: Any, text: str, client_id: str = "") -> dict[str, Any]:
    """Send a message; returns the server's answer to it (its ack or its error)."""
    client_id = client_id or events.new_id()
    await ws.send_json({"type": "message", "id": client_id, "text": text})
    while True:
        data = await frame(ws)
        if data["type"] in ("ack", "error") and data.get("id") == client_id:
            return data


async def inbound(w: World) -> list[events.InboundContact]:
    return [events.decode_inbound(fields[b"e"]) for _id, fields in await w.store.redis.xrange(KEYS.inbound)]


async def route_all(w: World) -> None:
    """What the routing worker does with everything on the inbound stream."""
    await route_inbound(w.store, w.deployment, KEYS.shard)


async def dispatch_all(w: World) -> None:
    """What the dispatch worker does with everything on the outbound stream."""
    await bus.ensure_group(w.store, KEYS.outbound, DISPATCH_GROUP)
    rows = await w.store.redis.xrange(KEYS.outbound)
    entries = [bus.Entry(KEYS.outbound, entry_id.decode(), fields[b"e"]) for entry_id, fields in rows]
    await Dispatcher(w.store, {"webchat": WebchatSender(w.store, w.deployment)}).handle(entries)


async def clear_of_minute_boundary() -> None:
    """Flood limits count per clock minute: a test counting up to one starts well inside a minute."""
    if time.time() % 60 > 55:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)


async def test_a_new_visitor_gets_a_token_and_a_second_tab_shows_the_same_conversation() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        first, welcome = await open_chat(client)
        assert welcome["type"] == "welcome" and welcome["history"] == [] and welcome["open"]
        assert (await say(first, "My meter is broken", "tab1-msg-0001"))["type"] == "ack"

        second, again = await open_chat(client, token=welcome["token"])
        assert [(m["kind"], m["text"], m["client_id"]) for m in again["history"]] == [
            ("in", "My meter is broken", "tab1-msg-0001")
        ]
        await say(second, "Are you there?")
        # The first tab sees what the second one sent (after the echo of its own message,
        # which the live feed may deliver before or after that message's ack).
        echoed = await frame(first, "message")
        if echoed["text"] == "My meter is broken":
            echoed = await frame(first, "message")
        assert echoed["text"] == "Are you there?" and echoed["kind"] == "in"

    [contact, _] = await inbound(w)
    assert (contact.channel, contact.body) == ("webchat", "My meter is broken")
    assert identity.ANONYMOUS.fullmatch(contact.address)


async def test_a_page_on_another_origin_is_refused_before_the_upgrade() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "https://globex.example"}, {}):
            response = await client.get("/webchat/acme/socket", headers={**headers, "Upgrade": "websocket"})
            assert response.status == 403, headers
        assert (await client.get("/webchat/nobody/socket", headers={"Origin": SHOP})).status == 404
    assert await inbound(w) == []


async def test_a_forged_expired_or_other_tenants_token_is_refused() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        _ws, welcome = await open_chat(client)
        payload, _, mac = welcome["token"].partition(".")
        claims = json.loads(identity._unb64(payload))
        forged = identity._b64(json.dumps({**claims, "v": "v-" + "0" * 32}).encode()) + "." + mac
        secret = await w.store.redis.get("cr:webchat:secret")
        expired = identity.sign_token(secret.decode(), "acme", claims["v"], now=time.time() - identity.TOKEN_TTL_S - 1)
        others = identity.sign_token(secret.decode(), "globex", claims["v"])
        for token, code in (
            (forged, "bad_token"),
            (expired, "token_expired"),
            (others, "bad_token"),
            ("x.y", "bad_token"),
        ):
            ws, refused = await open_chat(client, token=token)
            assert (refused["type"], refused["code"]) == ("error", code)
            assert (await ws.receive()).type == WSMsgType.CLOSE and ws.close_code == 4401


async def test_an_identified_customer_is_taken_only_with_the_tenants_signature() -> None:
    w = await chat_world()
    good = identity.customer_signature(CUSTOMER_SECRET, "email", "jane@example.com")
    async with chat_server(w) as client:
        for claimed in (
            {"kind": "email", "value": "jane@example.com"},
            {"kind": "email", "value": "jane@example.com", "signature": "0" * 64},
            {"kind": "email", "value": "john@example.com", "signature": good},
            {"kind": "id", "value": "jane@example.com", "signature": good},
        ):
            ws, refused = await open_chat(client, identity=claimed)
            assert (refused["type"], refused["code"]) == ("error", "identity_refused"), claimed
            assert (await ws.receive()).type == WSMsgType.CLOSE

        ws, welcome = await open_chat(
            client, identity={"kind": "email", "value": "jane@example.com", "signature": good}
        )
        assert welcome["type"] == "welcome"
        await say(ws, "Hello, it's Jane")
        # globex has no identity secret: nobody can be named there
        ws, refused = await open_chat(
            client,
            "globex",
            origin="https://globex.example",
            identity={"kind": "email", "value": "jane@example.com", "signature": good},
        )
        assert refused["code"] == "identity_refused"
    [contact] = await inbound(w)
    assert contact.address == "email:jane@example.com"


async def test_a_signed_email_joins_the_customer_who_already_wrote_from_that_address() -> None:
    w = await chat_world()
    by_mail = await w.arrive(channel="email", address="jane@example.com", body="An email first")
    customer = (await w.conversation(by_mail))["customer"]
    signature = identity.customer_signature(CUSTOMER_SECRET, "email", "jane@example.com")
    async with chat_server(w) as client:
        ws, _ = await open_chat(client, identity={"kind": "email", "value": "jane@example.com", "signature": signature})
        await say(ws, "And now a chat")
    [chat] = [c for c in await inbound(w) if c.channel == "webchat"]
    assert chat.address == "email:jane@example.com"
    await route_all(w)
    # one customer, one history: the chat joined Jane's open conversation
    assert [e.body for e in await conversations.history(w.store, "acme", by_mail)] == [
        "An email first",
        "And now a chat",
    ]
    assert (await w.conversation(by_mail))["customer"] == customer


async def test_a_message_resent_with_the_same_id_after_a_reconnect_is_added_once() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        ws, welcome = await open_chat(client)
        assert (await say(ws, "Only once please", "resend-0000001"))["duplicate"] is False
        await ws.close()
        again, _ = await open_chat(client, token=welcome["token"])
        assert (await say(again, "Only once please", "resend-0000001"))["duplicate"] is True
        _tab, replay = await open_chat(client, token=welcome["token"])
    assert [c.body for c in await inbound(w)] == ["Only once please"]
    assert [m["text"] for m in replay["history"]] == ["Only once please"]


async def test_flooding_is_refused_per_visitor_and_then_per_address() -> None:
    w = await chat_world()
    await clear_of_minute_boundary()
    async with chat_server(w) as client:
        first, _ = await open_chat(client)
        assert [(await say(first, f"message {n}"))["type"] for n in range(3)] == ["ack"] * 3
        flood = await say(first, "one too many")
        assert (flood["type"], flood["code"]) == ("error", "rate_limited") and 0 < flood["retry_after"] <= 60

        second, _ = await open_chat(client)  # another visitor from the same address
        assert (await say(second, "hello"))["type"] == "ack"
        assert (await say(second, "hello again"))["code"] == "rate_limited"  # the address's 5 a minute
    assert [c.body for c in await inbound(w)] == ["message 0", "message 1", "message 2", "hello"]


async def test_behind_a_trusted_proxy_the_address_limit_counts_the_forwarded_client() -> None:
    w = await chat_world()
    await clear_of_minute_boundary()
    async with chat_server(w, Settings(trusted_proxy_hops=1)) as client:
        crowd = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}  # the first entry is the client's own claim
        for n, (sent, expected) in enumerate(((3, ["ack"] * 3), (3, ["ack", "ack", "error"]))):
            tab, _ = await open_chat(client, headers=crowd)
            assert [(await say(tab, f"m{n}{i}"))["type"] for i in range(sent)] == expected
        elsewhere, _ = await open_chat(client, headers={"X-Forwarded-For": "192.0.2.44"})
        assert (await say(elsewhere, "a different visitor address"))["type"] == "ack"


async def test_an_oversize_message_is_refused_and_a_giant_frame_ends_the_socket() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        ws, _ = await open_chat(client)
        refused = await say(ws, "é" * 101)  # 202 bytes of UTF-8; the limit is 200
        assert (refused["code"], refused["message"]) == ("too_large", "the message is 202 bytes; the limit is 200")
        assert (await say(ws, "é" * 100))["type"] == "ack"  # exactly 200: fine, and the socket lives on

        await ws.send_str(json.dumps({"type": "message", "id": "giant-000001", "text": "x" * 100_000}))
        closing = await ws.receive(timeout=3)
        if closing.type == WSMsgType.TEXT:  # the live echo of the accepted message, if it came after its ack
            assert json.loads(closing.data)["text"] == "é" * 100
            closing = await ws.receive(timeout=3)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1009
    assert [c.body for c in await inbound(w)] == ["é" * 100]


async def test_typing_and_read_marks_go_both_ways() -> None:
    w = await chat_world()
    await w.available("amy")
    async with chat_server(w) as client:
        ws, welcome = await open_chat(client)
        await say(ws, "Hi")
        await route_all(w)
        conversation = await w.accept_offer("amy")

        await ws.send_json({"type": "typing", "active": True})
        await agents.reply(w.store, w.tenant, "amy", conversation, "Hello!")
        await signals.agent_typing(w.store, w.tenant, conversation, "amy")
        typing = await frame(ws, "typing")
        assert (typing["agent"], typing["active"]) == ("Amy Pond", True)

        await dispatch_all(w)
        reply = await frame(ws, "message")
        await ws.send_json({"type": "read", "up_to": reply["id"]})
        _tab, replay = await open_chat(client, token=welcome["token"])
        [first] = [m for m in replay["history"] if m["kind"] == "in"]
        await signals.agent_read(w.store, w.tenant, conversation, first["id"])
        assert (await frame(ws, "read"))["up_to"] == first["id"]

    seen = [s for _id, s in await signals.read_signals(w.store, "acme")]
    assert [(s.type, s.conversation, s.active, s.up_to) for s in seen] == [
        ("typing", conversation, True, ""),
        ("read", conversation, False, reply["id"]),
    ]


async def test_an_agents_reply_reaches_every_open_tab_and_stays_in_the_history() -> None:
    w = await chat_world()
    await w.available("amy")
    async with chat_server(w) as client:
        first, welcome = await open_chat(client)
        second, _ = await open_chat(client, token=welcome["token"])
        await say(first, "Is my payment late?")
        await route_all(w)
        conversation = await w.accept_offer("amy")
        await agents.reply(w.store, w.tenant, "amy", conversation, "<b>No</b>, all paid")
        await dispatch_all(w)
        await dispatch_all(w)  # a redelivered entry shows nothing twice
        for tab in (first, second):
            shown = await frame(tab, "message")
            while shown["kind"] != "out":
                shown = await frame(tab, "message")
            assert (shown["text"], shown["agent"]) == ("<b>No</b>, all paid", "Amy Pond")
        _third, replay = await open_chat(client, token=welcome["token"])
    assert [(m["kind"], m["text"]) for m in replay["history"]] == [
        ("in", "Is my payment late?"),
        ("out", "<b>No</b>, all paid"),
    ]


async def test_the_prechat_topic_picks_the_queue_and_is_required_first() -> None:
    w = await chat_world(
        'prechat = ["name", "email", "topic"]\nprechat_required = ["email", "topic"]\n'
        'topics = [{ label = "Billing", queue = "billing" }, { label = "Other", queue = "support" }]'
    )
    async with chat_server(w) as client:
        ws, welcome = await open_chat(client)
        assert welcome["prechat_done"] is False
        assert (await say(ws, "Hello"))["code"] == "prechat_required"
        await ws.send_json({"type": "prechat", "fields": {"name": "Jo", "email": "not-an-email", "topic": "Billing"}})
        assert (await frame(ws))["code"] == "prechat_invalid"
        await ws.send_json({"type": "prechat", "fields": {"name": "Jo", "email": "jo@example.com", "topic": "Billing"}})
        assert (await frame(ws))["type"] == "prechat_ok"
        assert (await say(ws, "About my bill"))["type"] == "ack"
    [contact] = await inbound(w)
    assert contact.queue == "billing"
    assert contact.metadata == {"prechat_name": "Jo", "prechat_email": "jo@example.com", "prechat_topic": "Billing"}


async def test_after_hours_the_widget_is_told_and_messages_get_the_offline_answer() -> None:
    w = await chat_world('offline_message = "Closed now: leave your email."\nhours = { timezone = "UTC" }')
    async with chat_server(w) as client:
        ws, welcome = await open_chat(client)
        assert welcome["open"] is False
        refused = await say(ws, "Anyone?")
        assert (refused["code"], refused["message"]) == ("closed", "Closed now: leave your email.")
    assert await inbound(w) == []


async def test_bad_frames_get_clear_errors_and_lose_the_socket_nothing() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        ws = await client.ws_connect("/webchat/acme/socket", headers={"Origin": SHOP})
        await ws.send_json({"type": "message", "id": "early-000001", "text": "no hello"})
        assert (await frame(ws))["code"] == "hello_expected"
        ws, _ = await open_chat(client)
        await ws.send_str("not json")
        assert (await frame(ws))["code"] == "bad_request"
        await ws.send_json({"type": "message", "id": "bad id!", "text": "hi"})
        assert (await frame(ws))["code"] == "bad_request"
        assert (await say(ws, "   "))["code"] == "empty"
        assert (await say(ws, "still here"))["type"] == "ack"


def test_visitor_tokens_round_trip_and_name_their_tenant() -> None:
    token = identity.sign_token("s" * 32, "acme", "v-" + "a" * 32)
    assert identity.verify_token("s" * 32, "acme", token) == "v-" + "a" * 32
    assert msgspec.json.decode(identity._unb64(token.partition(".")[0]))["t"] == "acme"


async def test_one_address_may_hold_only_so_many_open_chats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "MAX_SOCKETS_PER_ADDRESS", 2)
    w = await chat_world()
    async with chat_server(w) as client:
        first, _ = await open_chat(client)
        await open_chat(client)
        refused = await client.get("/webchat/acme/socket", headers={"Origin": SHOP, "Upgrade": "websocket"})
        assert refused.status == 429
        await first.close()
        await asyncio.sleep(0.05)  # the server sees the close
        _third, welcome = await open_chat(client)
        assert welcome["type"] == "welcome"


def test_a_tab_too_slow_to_take_its_frames_is_cut_off_rather_than_held_in_memory() -> None:
    tab = Tab(ws=None)  # type: ignore[arg-type]
    for n in range(QUEUE_SIZE):
        tab.push(f"frame {n}")
    assert not tab.overflowed
    tab.push("one more")
    assert tab.overflowed and tab.frames.qsize() == QUEUE_SIZE


async def test_a_message_the_store_did_not_take_is_not_acknowledged_and_can_be_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = await chat_world()
    real_ingest = bus.ingest

    async def store_down(*_args: Any) -> None:
        raise RedisConnectionError("Connection refused")

    async with chat_server(w) as client:
        ws, _ = await open_chat(client)
        monkeypatch.setattr(bus, "ingest", store_down)
        failed = await say(ws, "Are you there?", "flaky-0000001")
        assert (failed["type"], failed["code"]) == ("error", "unavailable")
        monkeypatch.setattr(bus, "ingest", real_ingest)
        assert (await say(ws, "Are you there?", "flaky-0000001")) == {
            "type": "ack",
            "id": "flaky-0000001",
            "duplicate": False,
        }
    assert [c.body for c in await inbound(w)] == ["Are you there?"]


async def test_the_browsers_language_is_routings_fallback_when_the_words_do_not_tell_one() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        ws, _welcome = await open_chat(client, language="zh-HK")
        assert (await say(ws, "👍 123"))["type"] == "ack"  # nothing to tell a language by: the browser's
        other, _ = await open_chat(client, language="zh-HK")
        assert (await say(other, CANTONESE))["type"] == "ack"  # the words come first
        forged, _ = await open_chat(client, language="<script>alert(1)</script>")
        assert (await say(forged, "12345"))["type"] == "ack"
    contacts = await inbound(w)
    assert [c.metadata.get("browser_language") for c in contacts] == ["zh-HK", "zh-HK", None]
    assert [intake.with_language(c).language for c in contacts] == ["zh-HK", "yue", ""]
