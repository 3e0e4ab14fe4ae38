"""Outbound SMS: the real twilio client against a local stand-in for Twilio's API,
driven by the dispatcher as in production."""

from __future__ import annotations

import asyncio
import socket

import pytest

import channels
from channels import _twilio_rest
from channels.sandbox import outbox
from channels.sms import optout, outbound
from channels.sms.outbound import SmsSender, status_callback_url
from channels.transport import reconcile_from_record
from ops.redis_server import free_port
from router import agents, bus, events
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.channels.twilio_api import TwilioApi
from tests.factories import World, world
from tests.factories import outbound as outbound_message
from workers.dispatch import SEND_LEASE_MS, Dispatcher

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "acme-auth-token-0123456789abcdef"
CUSTOMER = "+15551230000"
PUBLIC = "https://router.example.com"
KEYS = Keys("acme")

TENANTS = f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}
twilio = {{ account_sid = "{ACCOUNT}", auth_token_env = "ACME_TWILIO_TOKEN" }}
sms = {{ numbers = ["+15005550006", "+15005550007"] }}
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"

[[tenants]]
id = "globex"
[[tenants.queues]]
id = "sales"
"""


async def sms_world(text: str = TENANTS) -> World:
    return await world(text, {"ACME_TWILIO_TOKEN": TOKEN})


@pytest.fixture
async def api():
    async with TwilioApi() as server:
        yield server


@pytest.fixture
async def make_sender():
    """SmsSender(world, settings) pointed at the test's API; closed after the test."""
    made: list[SmsSender] = []

    def make(w: World, settings: Settings, **options) -> SmsSender:
        sender = SmsSender(w.store, w.deployment, settings, **options)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.close()


def settings_for(api: TwilioApi, **fields) -> Settings:
    return Settings(twilio_api_base=api.url, public_url=PUBLIC, **fields)


async def send(w: World, sender: SmsSender, message: events.OutboundMessage, **options) -> str:
    """Queue a message and let a dispatcher deliver it; returns its status afterwards."""
    payload = events.encode(message)
    await bus.publish(w.store, Keys(message.tenant).outbound, message)
    return await Dispatcher(w.store, {"sms": sender}, **options).deliver(message, payload)


async def delivery(w: World, message: events.OutboundMessage) -> dict[str, str]:
    record = await w.store.redis.hgetall(Keys(message.tenant).delivery(message.id))
    return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}


async def make_due(w: World, message: events.OutboundMessage) -> None:
    await w.store.redis.zadd(Keys(message.tenant).retries, {message.id: 0})


async def test_an_agents_reply_reaches_twilio_from_the_tenants_number_with_a_status_callback(api):
    w = await sms_world()
    await w.available("amy")
    conversation = await w.arrive(address=CUSTOMER)
    await w.accept_offer("amy")
    reply = await agents.reply(w.store, w.tenant, "amy", conversation, "Sorry! Fixing it now.")
    senders = channels.senders(w.store, w.deployment, settings_for(api))
    dispatcher = Dispatcher(w.store, senders)
    consumer = bus.Consumer(w.store, DISPATCH_GROUP, "d1", [KEYS.outbound], dispatcher.handle, block_ms=1)
    await consumer.ensure_groups()
    try:
        assert await consumer.read() == 1
    finally:
        await senders["sms"].close()
    [request] = api.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.auth == (ACCOUNT, TOKEN)
    assert (request["From"], request["To"], request["Body"]) == ("+15005550006", CUSTOMER, "Sorry! Fixing it now.")
    assert request["StatusCallback"] == f"{PUBLIC}/twilio/acme/sms/status"
    assert "MediaUrl" not in request.form and "MessagingServiceSid" not in request.form
    [sid] = api.sids
    record = await delivery(w, reply)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("sent", sid, "1")
    assert (record["segments"], record["encoding"]) == ("1", "GSM-7")
    assert (await w.store.redis.get(KEYS.provider_message(sid))).decode() == reply.id
    assert await outbox(w.store, "acme") == []


async def test_the_conversations_own_number_sends_when_it_is_the_tenants(api, make_sender):
    w = await sms_world()
    sender = make_sender(w, settings_for(api))
    await send(w, sender, outbound_message(sender="+15005550007"))
    await send(w, sender, outbound_message(sender="+19999999999"))  # not the tenant's: its first number
    assert [r["From"] for r in api.requests] == ["+15005550007", "+15005550006"]


async def test_a_messaging_service_sends_when_the_tenant_has_one(api, make_sender):
    w = await sms_world(TENANTS.replace("sms = {", 'sms = { messaging_service_sid = "MG0123", '))
    await send(w, make_sender(w, settings_for(api)), outbound_message())
    [request] = api.requests
    assert request["MessagingServiceSid"] == "MG0123"
    assert "From" not in request.form


async def test_linked_attachments_go_as_media_and_the_record_counts_segments(api, make_sender):
    w = await sms_world()
    attachments = (
        events.Attachment(url="https://files.example.com/invoice.pdf", content_type="application/pdf"),
        events.Attachment(url="store:0123abcd"),  # not reachable by Twilio
        events.Attachment(url="http://files.example.com/photo.jpg", content_type="image/jpeg"),
    )
    message = outbound_message(body="Your invoice, 5€ off 😀 " * 4, attachments=attachments)
    assert await send(w, make_sender(w, settings_for(api)), message) == "sent"
    [request] = api.requests
    assert request.form.getall("MediaUrl") == [attachments[0].url, attachments[2].url]
    record = await delivery(w, message)
    assert (record["segments"], record["encoding"]) == ("2", "UCS-2")


async def test_a_rate_limited_message_is_retried_and_then_sent(api, make_sender):
    w = await sms_world()
    api.answer(429, 20429, "Too Many Requests")
    sender = make_sender(w, settings_for(api))
    message = outbound_message(body="rate limited")
    assert await send(w, sender, message) == "retry"
    record = await delivery(w, message)
    assert "429" in record["error"]
    assert await Dispatcher(w.store, {"sms": sender}).run_retries("acme") == 0  # not due yet
    await make_due(w, message)
    assert await Dispatcher(w.store, {"sms": sender}).run_retries("acme") == 1
    assert len(api.requests) == 2
    record = await delivery(w, message)
    assert (record["status"], record["attempts"], record["provider_id"]) == ("sent", "2", api.sids[0])


async def test_twilio_unavailable_is_retried(api, make_sender):
    w = await sms_world()
    api.answer(503, 20503, "Service Unavailable")
    message = outbound_message()
    assert await send(w, make_sender(w, settings_for(api)), message) == "retry"
    assert "503" in (await delivery(w, message))["error"]


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_other_twilio_server_errors_are_never_resent(api, make_sender, status):
    # Twilio may have created the message before failing: a retry could text twice.
    w = await sms_world()
    api.answer(status, 20500, "Internal Server Error")
    message = outbound_message()
    sender = make_sender(w, settings_for(api))
    assert await send(w, sender, message) == "unknown"
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}).run_retries("acme")
    assert len(api.requests) == 1


async def test_twilio_unreachable_is_retried(make_sender):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here once it is closed
    w = await sms_world()
    message = outbound_message()
    settings = Settings(twilio_api_base=f"http://127.0.0.1:{port}")
    assert await send(w, make_sender(w, settings), message) == "retry"
    assert "unreachable" in (await delivery(w, message))["error"]


async def test_a_twilio_that_does_not_answer_in_time_is_not_retried_but_recorded_unknown(api, make_sender):
    # The request may have reached Twilio, which has no idempotency key: a retry
    # could text the customer twice.
    w = await sms_world()
    api.answer(201, delay=2.0)
    message = outbound_message()
    sender = make_sender(w, settings_for(api), timeout_s=0.2)
    assert await send(w, sender, message) == "unknown"
    assert "Timeout" in (await delivery(w, message))["error"]
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}).run_retries("acme")
    assert len(api.requests) == 1


async def test_a_twilio_that_cannot_be_reached_is_retried(make_sender):
    w = await sms_world()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the request never left
    sender = make_sender(w, Settings(twilio_api_base=closed, public_url=PUBLIC))
    message = outbound_message()
    assert await send(w, sender, message) == "retry"
    assert "unreachable" in (await delivery(w, message))["error"]


def test_the_http_timeout_is_well_within_the_send_lease():
    assert _twilio_rest.TIMEOUT_S * 1000 * 4 <= SEND_LEASE_MS


async def test_an_invalid_number_fails_with_twilios_error_code_and_is_never_retried(api, make_sender):
    w = await sms_world()
    api.answer(400, 21211, "The 'To' number +1555 is not a valid phone number.")
    sender = make_sender(w, settings_for(api))
    message = outbound_message(to="+1555")
    assert await send(w, sender, message) == "failed"
    record = await delivery(w, message)
    assert record["error"].startswith("Twilio error 21211: ")
    assert "not a valid phone number" in record["error"]
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}).run_retries("acme")
    assert len(api.requests) == 1


async def test_a_recipient_who_unsubscribed_is_refused_and_suppressed(api, make_sender):
    w = await sms_world()
    api.answer(400, 21610, "Attempt to send to unsubscribed recipient")
    sender = make_sender(w, settings_for(api))
    message = outbound_message()
    assert await send(w, sender, message) == "refused"
    assert "21610" in (await delivery(w, message))["error"]
    assert await optout.is_suppressed(w.store, "acme", CUSTOMER)
    [opted_out] = await w.events(events.OptedOut)
    assert (opted_out.address, opted_out.channel, opted_out.keyword) == (CUSTOMER, "sms", "twilio:21610")
    assert await send(w, sender, outbound_message()) == "refused"
    assert len(api.requests) == 1  # the second one never left


async def test_a_suppressed_number_is_refused_without_calling_twilio(api, make_sender):
    w = await sms_world()
    await optout.suppress(w.store, "acme", CUSTOMER)
    message = outbound_message()
    assert await send(w, make_sender(w, settings_for(api)), message) == "refused"
    assert "opted out" in (await delivery(w, message))["error"]
    assert api.requests == []


async def test_a_suppressed_number_gets_nothing_from_the_sandbox_either(api, make_sender):
    w = await sms_world()
    await optout.suppress(w.store, "globex", CUSTOMER)
    assert await send(w, make_sender(w, settings_for(api)), outbound_message("globex")) == "refused"
    assert await outbox(w.store, "globex") == []


async def test_a_tenant_without_twilio_sends_to_the_sandbox_outbox(api, make_sender):
    w = await sms_world()
    message = outbound_message("globex", body="Hello from the sandbox")
    assert await send(w, make_sender(w, settings_for(api)), message) == "sent"
    assert api.requests == []
    [(_entry, provider_id, kept)] = await outbox(w.store, "globex")
    assert kept == message
    record = await delivery(w, message)
    assert (record["provider_id"], record["segments"], record["encoding"]) == (provider_id, "1", "GSM-7")


async def test_a_tenant_with_neither_a_number_nor_a_messaging_service_fails(api, make_sender):
    w = await sms_world(TENANTS.replace('sms = { numbers = ["+15005550006", "+15005550007"] }', ""))
    message = outbound_message()
    assert await send(w, make_sender(w, settings_for(api)), message) == "failed"
    assert "neither an SMS number nor a Messaging Service" in (await delivery(w, message))["error"]
    assert api.requests == []


def test_the_status_callback_is_on_the_public_url_else_on_the_web_process():
    assert status_callback_url(Settings(public_url=PUBLIC), "acme") == f"{PUBLIC}/twilio/acme/sms/status"
    assert (
        status_callback_url(Settings(host="10.1.2.3", port=9000), "acme")
        == "http://10.1.2.3:9000/twilio/acme/sms/status"
    )


class Crash(BaseException):
    """The dispatcher process dies here (BaseException: nothing may catch it)."""


async def test_a_message_twilio_accepted_before_the_dispatcher_died_is_not_resent(api, make_sender, monkeypatch):
    w = await sms_world()
    sender = make_sender(w, settings_for(api))
    message = outbound_message()
    real_record = SmsSender._record

    async def record_then_die(self, *args, **kwargs):
        await real_record(self, *args, **kwargs)
        raise Crash

    monkeypatch.setattr(SmsSender, "_record", record_then_die)
    with pytest.raises(Crash):
        await send(w, sender, message)
    monkeypatch.undo()
    assert (await delivery(w, message))["status"] == "sending"
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}, lease_ms=0).run_retries("acme")
    record = await delivery(w, message)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("sent", api.sids[0], "1")
    assert len(api.requests) == 1


async def test_a_dispatcher_that_died_before_calling_twilio_leaves_it_to_be_sent_once(api, make_sender, monkeypatch):
    w = await sms_world()
    sender = make_sender(w, settings_for(api))
    message = outbound_message()

    async def die(*_args):
        raise Crash

    monkeypatch.setattr(outbound.optout, "is_suppressed", die)
    with pytest.raises(Crash):
        await send(w, sender, message)
    monkeypatch.undo()
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}, lease_ms=0).run_retries("acme")
    record = await delivery(w, message)
    assert (record["status"], record["attempts"]) == ("sent", "2")
    assert len(api.requests) == 1


async def test_a_dispatcher_that_died_waiting_for_twilio_does_not_send_again(api, make_sender):
    w = await sms_world()
    api.answer(201, delay=5.0)
    sender = make_sender(w, settings_for(api))
    message = outbound_message()
    sending = asyncio.create_task(send(w, sender, message))
    await asyncio.wait_for(api.received.wait(), 5)
    sending.cancel()  # the process dies with the request in flight
    with pytest.raises(asyncio.CancelledError):
        await sending
    await make_due(w, message)
    await Dispatcher(w.store, {"sms": sender}, lease_ms=0).run_retries("acme")
    record = await delivery(w, message)
    assert record["status"] == "unknown"
    assert len(api.requests) == 1


async def test_after_a_crash_our_own_record_says_sent_not_sent_or_unknown() -> None:
    # the one answer every sender without a provider lookup gives (email, fax, telegram too)
    w = await sms_world()
    message = outbound_message()
    record = Keys("acme").delivery(message.id)
    assert await reconcile_from_record(w.store, message) == ("not_sent", "")  # never marked
    await w.store.redis.hset(record, mapping={"attempts": 2, "requested": 1})
    assert await reconcile_from_record(w.store, message) == ("not_sent", "")  # an earlier attempt's mark
    await w.store.redis.hset(record, "requested", 2)
    assert await reconcile_from_record(w.store, message) == ("unknown", "")  # died waiting for the answer
    await w.store.redis.hset(record, "provider_id", "SM123")
    assert await reconcile_from_record(w.store, message) == ("sent", "SM123")
