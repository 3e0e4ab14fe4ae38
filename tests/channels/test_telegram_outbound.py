"""Outbound Telegram: the real python-telegram-bot client against a local server that
speaks the Bot API, driven by the dispatcher as in production."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import channels
from channels.sandbox import outbox
from channels.telegram import reachability
from channels.telegram.outbound import TEXT_LIMIT, TelegramSender, split_text
from router import agents, bus, events
from router.attachments import AttachmentStore
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.channels.telegram_api import TelegramApi
from tests.factories import World, world
from tests.factories import outbound as outbound_message
from workers.dispatch import Dispatcher

TOKEN = "7000000001:AAHacmeTestToken-0123456789abcdefghi"
CHAT = "4242"

TENANTS = """
[[tenants]]
id = "acme"
entry = { default = "support" }
telegram = { token_env = "ACME_TELEGRAM_TOKEN", mode = "polling" }
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"

[[tenants]]
id = "initech"
[[tenants.queues]]
id = "desk"
"""


async def telegram_world() -> World:
    return await world(TENANTS, {"ACME_TELEGRAM_TOKEN": TOKEN})


@pytest.fixture
async def api():
    async with TelegramApi(TOKEN) as server:
        yield server


@pytest.fixture
def settings(api: TelegramApi, tmp_path: Path) -> Settings:
    return Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path / "files"))


@pytest.fixture
async def make_sender():
    made: list[TelegramSender] = []

    def make(w: World, settings: Settings, **options) -> TelegramSender:
        sender = TelegramSender(w.store, w.deployment, settings, **options)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.close()


def message(**fields) -> events.OutboundMessage:
    return outbound_message(channel="telegram", to=fields.pop("to", CHAT), **fields)


async def send(w: World, sender: TelegramSender, item: events.OutboundMessage) -> str:
    """Queue a message and let a dispatcher deliver it; returns its status afterwards."""
    await bus.publish(w.store, Keys(item.tenant).outbound, item)
    return await Dispatcher(w.store, {"telegram": sender}).deliver(item, events.encode(item))


async def retry(w: World, sender: TelegramSender, item: events.OutboundMessage) -> dict[str, str]:
    """Make the message's retry due now and let a dispatcher run it; returns its record."""
    await w.store.redis.zadd(Keys(item.tenant).retries, {item.id: 0})
    await Dispatcher(w.store, {"telegram": sender}).run_retries(item.tenant)
    return await delivery(w, item)


async def delivery(w: World, item: events.OutboundMessage) -> dict[str, str]:
    record = await w.store.redis.hgetall(Keys(item.tenant).delivery(item.id))
    return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}


async def test_an_agents_reply_to_a_telegram_chat_leaves_through_the_tenants_bot(api, settings):
    w = await telegram_world()
    await w.available("amy")
    conversation = await w.arrive(channel="telegram", address=CHAT)
    await w.accept_offer("amy")
    reply = await agents.reply(w.store, w.tenant, "amy", conversation, "Sorry! Fixing it now.")
    senders = channels.senders(w.store, w.deployment, settings)
    consumer = bus.Consumer(
        w.store, DISPATCH_GROUP, "d1", [Keys("acme").outbound], Dispatcher(w.store, senders).handle, block_ms=1
    )
    await consumer.ensure_groups()
    try:
        assert await consumer.read() == 1
    finally:
        for sender in senders.values():
            if hasattr(sender, "close"):
                await sender.close()
    [call] = api.sent()
    assert (call.method, call.token) == ("sendMessage", TOKEN)
    assert (call.params["chat_id"], call.params["text"]) == (CHAT, "Sorry! Fixing it now.")
    record = await delivery(w, reply)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("sent", f"{CHAT}:1001", "1")
    assert await outbox(w.store, "acme") == []


async def test_the_bots_token_never_reaches_the_logs(api, settings, make_sender, caplog):
    # every Bot API URL holds the token, and httpx logs each request's URL at INFO
    caplog.set_level(logging.DEBUG)
    w = await telegram_world()
    assert await send(w, make_sender(w, settings), message(body="Hello")) == "sent"
    assert caplog.records and TOKEN not in caplog.text and TOKEN.partition(":")[2] not in caplog.text


async def test_a_revoked_token_fails_the_message_without_the_token_in_its_record(tmp_path, make_sender, caplog):
    caplog.set_level(logging.DEBUG)
    w = await telegram_world()
    async with TelegramApi("7000000001:AAHtheTokenBotFatherHasNow-0123456789") as api:  # ours was revoked
        settings = Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path / "files"))
        item = message(body="Hello")
        assert await send(w, make_sender(w, settings), item) == "failed"
    record = await delivery(w, item)
    assert "refused the bot's token" in record["error"] and TOKEN not in record["error"]
    [failed] = [e for e in await w.events(events.DeliveryStatus) if e.status == "failed"]
    assert TOKEN not in failed.error and TOKEN not in caplog.text


@pytest.mark.e2e  # waits out Telegram's retry_after of a whole second
async def test_a_reply_hitting_429_retry_after_waits_and_then_succeeds_in_the_same_attempt(api, settings, make_sender):
    w = await telegram_world()
    api.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    item = message(body="Your engineer comes at 10.")
    assert await send(w, make_sender(w, settings), item) == "sent"
    assert [c.params["text"] for c in api.sent()] == ["Your engineer comes at 10."] * 2  # refused, then sent
    record = await delivery(w, item)
    assert (record["status"], record["attempts"], record["provider_id"]) == ("sent", "1", f"{CHAT}:1001")


async def test_flood_control_longer_than_the_bound_is_retried_later_by_the_dispatcher(api, settings, make_sender):
    w = await telegram_world()
    api.fail("sendMessage", 429, "Too Many Requests: retry after 120", retry_after=120)
    sender = make_sender(w, settings)
    item = message(body="later")
    assert await send(w, sender, item) == "retry"
    assert "retry in 120" in (await delivery(w, item))["error"]
    record = await retry(w, sender, item)
    assert (record["status"], record["attempts"]) == ("sent", "2")
    assert len(api.sent()) == 2


async def test_a_user_who_blocked_the_bot_is_marked_unreachable_and_never_sent_to_again(api, settings, make_sender):
    w = await telegram_world()
    api.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    sender = make_sender(w, settings)
    first = message(body="Are you there?")
    assert await send(w, sender, first) == "failed"
    assert "blocked by the user" in (await delivery(w, first))["error"]
    assert await reachability.is_unreachable(w.store, "acme", CHAT)
    [opted] = await w.events(events.OptedOut)
    assert (opted.channel, opted.address, opted.keyword) == ("telegram", CHAT, "telegram:blocked")
    second = message(body="Hello?")
    assert await send(w, sender, second) == "refused"
    assert len(api.sent()) == 1


async def test_no_answer_after_sending_is_unknown_and_never_resent(api, settings, make_sender):
    # Telegram may have delivered it before the answer was lost: a retry could send it twice.
    w = await telegram_world()
    sender = make_sender(w, settings, timeout_s=0.5)
    await sender.bots.ready(w.tenant)  # getMe answered; the send itself stalls
    api.stall("sendMessage", 3)
    item = message(body="once only")
    assert await send(w, sender, item) == "unknown"
    assert (await retry(w, sender, item))["status"] == "unknown"
    assert len(api.sent()) == 1


async def test_telegram_unreachable_is_retried_later(api, settings, make_sender):
    w = await telegram_world()
    sender = make_sender(w, settings)
    await sender.bots.ready(w.tenant)
    await api.__aexit__(None, None, None)  # nothing listens any more: the request never leaves
    item = message(body="when you are back")
    assert await send(w, sender, item) == "retry"
    assert "unreachable" in (await delivery(w, item))["error"]
    assert await sender.reconcile(item) == ("not_sent", "")


async def test_a_long_reply_is_split_and_a_retry_sends_only_the_parts_not_yet_confirmed(api, settings, make_sender):
    w = await telegram_world()
    body = " ".join(f"word{i}" for i in range(1500))  # 12,389 characters: four messages
    assert len(split_text(body)) == 4
    api.fail("sendMessage", 429, "Too Many Requests: retry after 300", retry_after=300, after=1)
    sender = make_sender(w, settings)
    item = message(body=body)
    assert await send(w, sender, item) == "retry"
    record = await retry(w, sender, item)
    assert record["status"] == "sent"
    texts = [c.params["text"] for c in api.sent()]
    assert len(texts) == 5  # part 1, part 2 refused, then parts 2 to 4; part 1 never twice
    assert texts[1] == texts[2]
    assert " ".join([texts[0], *texts[2:]]) == body
    assert record["provider_id"] == f"{CHAT}:1001"


class Killed(BaseException):
    """The dispatcher's process dies here: nothing after it runs."""


async def test_a_dispatcher_dying_between_two_parts_is_reconciled_not_sent_and_sends_only_the_rest(
    api, settings, make_sender, monkeypatch
):
    w = await telegram_world()
    body = " ".join(f"word{i}" for i in range(700))  # two messages
    assert len(split_text(body)) == 2
    sender = make_sender(w, settings)
    item = message(body=body)
    key = Keys("acme").delivery(item.id)
    await w.store.redis.hset(key, "attempts", 1)  # as the dispatcher's begin_send records it
    send_part = sender._send_part

    async def dies_before_the_second_part(*args, **kwargs):
        if api.sent():
            raise Killed
        return await send_part(*args, **kwargs)

    monkeypatch.setattr(sender, "_send_part", dies_before_the_second_part)
    with pytest.raises(Killed):
        await sender.send(item)
    # Telegram confirmed the first part and was never asked for the second: safe to go on
    assert await sender.reconcile(item) == ("not_sent", "")
    monkeypatch.setattr(sender, "_send_part", send_part)
    await w.store.redis.hset(key, "attempts", 2)
    assert await sender.send(item) == f"{CHAT}:1001"
    assert " ".join(c.params["text"] for c in api.sent()) == body  # each part once


async def test_a_stored_picture_goes_as_a_photo_with_the_body_as_its_caption(api, settings, make_sender):
    w = await telegram_world()
    picture = b"\x89PNG\r\n\x1a\n a bill" * 50
    ref = AttachmentStore(settings.attachment_dir).put_sync(picture)
    attachment = events.Attachment(url=ref, content_type="image/png", filename="bill.png", size=len(picture))
    item = message(body="Here is your bill", attachments=(attachment,))
    assert await send(w, make_sender(w, settings), item) == "sent"
    [call] = api.sent()
    assert call.method == "sendPhoto"
    assert (call.params["photo"], call.params["caption"]) == (picture, "Here is your bill")


async def test_a_document_the_customer_sent_can_be_sent_back_by_its_telegram_reference(api, settings, make_sender):
    w = await telegram_world()
    file_id, _unique = api.add_file(b"%PDF-1.7", "documents/file_1.pdf")
    attachment = events.Attachment(url=f"telegram:{file_id}", content_type="application/pdf", filename="a.pdf")
    assert await send(w, make_sender(w, settings), message(body="", attachments=(attachment,))) == "sent"
    [call] = api.sent()
    assert (call.method, call.params["document"]) == ("sendDocument", file_id)


async def test_a_missing_stored_attachment_fails_the_message_without_sending_anything(api, settings, make_sender):
    w = await telegram_world()
    attachment = events.Attachment(url="store:" + "0" * 64, content_type="image/png")
    item = message(body="see attached", attachments=(attachment,))
    assert await send(w, make_sender(w, settings), item) == "failed"
    assert api.sent() == []


async def test_a_tenant_without_a_bot_sends_to_the_sandbox_outbox(api, settings, make_sender):
    w = await telegram_world()
    item = message(tenant="initech", body="offline")
    assert await send(w, make_sender(w, settings), item) == "sent"
    [(_entry, provider_id, kept)] = await outbox(w.store, "initech")
    assert (provider_id, kept.body) == (f"sandbox-{item.id}", "offline")
    assert api.calls == []


async def test_reconcile_trusts_the_confirmed_record_and_the_mark_before_each_request(api, settings, make_sender):
    w = await telegram_world()
    sender = make_sender(w, settings)
    item = message()
    key = Keys("acme").delivery(item.id)
    await w.store.redis.hset(key, mapping={"attempts": 1})
    assert await sender.reconcile(item) == ("not_sent", "")  # died before asking Telegram
    await w.store.redis.hset(key, "requested", 1)
    assert await sender.reconcile(item) == ("unknown", "")  # died waiting for the answer
    await w.store.redis.hset(key, "provider_id", f"{CHAT}:7")
    assert await sender.reconcile(item) == ("sent", f"{CHAT}:7")


def test_long_text_is_cut_at_spaces_within_the_limit_and_never_inside_an_emoji():
    text = ("ab " * 3000) + "😀" * 3000
    pieces = split_text(text)
    assert all(len(p.encode("utf-16-le")) // 2 <= TEXT_LIMIT for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert pieces[0].endswith("ab")
    assert split_text("") == [] and split_text("short") == ["short"]
