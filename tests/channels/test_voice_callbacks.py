"""Callback dialling: an accepted callback calls the agent first, then the customer,
through the real twilio client against a local stand-in for Twilio's API; signed
reports on each leg decide connected, dial again after the policy's spacing, or
no-answer after the last attempt."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from channels.sandbox import outbox
from channels.voice.outbound import GREETING, VoiceSender
from router import agents, bus, events
from router.app import web
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.channels.twilio_api import Received, TwilioApi
from tests.factories import World, world
from workers.dispatch import Dispatcher

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "acme-auth-token-0123456789abcdef"
SANDBOX_TOKEN = "sandbox-token-0123456789"
CUSTOMER = "+15551230000"
AMY_PHONE = "+15557770001"
ACME_NUMBER = "+15005550006"
PUBLIC = "https://router.example.com"
SPACING_S = 120
KEYS = Keys("acme")

TENANTS = f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}
twilio = {{ account_sid = "{ACCOUNT}", auth_token_env = "ACME_TWILIO_TOKEN" }}
[tenants.voice]
numbers = ["{ACME_NUMBER}", "+15005550007"]
callback = {{ attempts = 3, spacing_s = {SPACING_S} }}
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"
phone = "{AMY_PHONE}"
[[tenants.agents]]
id = "zoe"

[[tenants]]
id = "globex"
entry = {{ default = "sales" }}
voice = {{ numbers = ["+15005550009"] }}
[[tenants.queues]]
id = "sales"
[[tenants.agents]]
id = "gus"
phone = "+15557770009"
"""


class Voice:
    """The world, the fake Twilio API calls go out through, the dispatcher that
    places them, and the web process Twilio reports back to."""

    def __init__(self, w: World, api: TwilioApi, web_client: TestClient, sender: VoiceSender) -> None:
        self.w, self.api, self.web, self.sender = w, api, web_client, sender
        self.dispatcher = Dispatcher(w.store, {"voice": sender})

    async def callback_accepted(self, agent: str = "amy", tenant: str = "acme", **fields) -> str:
        """A callback contact is offered to the agent, who accepts; returns the conversation."""
        w = self.w
        await agents.set_presence(w.store, w.deployment.tenant(tenant), agent, "available")
        contact = _contact(tenant, kind="callback", **fields)
        conversation = await w.deliver(contact)
        [offer] = await agents.offers(w.store, w.deployment.tenant(tenant), agent)
        await agents.accept(w.store, w.deployment.tenant(tenant), agent, offer["reservation"])
        return conversation

    async def dispatch(self, tenant: str = "acme") -> int:
        """The dispatch worker reads the tenant's outbound stream once."""
        consumer = bus.Consumer(
            self.w.store, DISPATCH_GROUP, "d1", [Keys(tenant).outbound], self.dispatcher.handle, block_ms=1
        )
        await consumer.ensure_groups()
        return await consumer.read()

    async def dial_again(self) -> int:
        """Make every scheduled retry due now and let the dispatcher run them."""
        for message_id in await self.w.store.redis.zrange(KEYS.retries, 0, -1):
            await self.w.store.redis.zadd(KEYS.retries, {message_id: 0})
        return await self.dispatcher.run_retries("acme")

    @property
    def calls(self) -> list[Received]:
        return [r for r in self.api.requests if r.path.endswith("/Calls.json")]

    async def report(self, leg: str, status: str, *, call: int = -1, signature: str | None = None):
        """Twilio reports a leg of a placed call (the agent's call, or the customer's
        leg the TwiML dialled), to the URL given for it."""
        request = self.calls[call]
        if leg == "agent":
            url, sid = request["StatusCallback"], self.api.call_sids[call]
        else:
            url, sid = dialled_number(request).get("statusCallback"), "CA" + secrets.token_hex(16)
        form = {"CallSid": sid, "CallStatus": status, "AccountSid": ACCOUNT, "From": ACME_NUMBER, "To": CUSTOMER}
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(url, form)
        return await self.web.post(url.removeprefix(PUBLIC), data=form, headers={"X-Twilio-Signature": signature})

    async def delivery(self, message_id: str) -> dict[str, str]:
        record = await self.w.store.redis.hgetall(KEYS.delivery(message_id))
        return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}

    async def reported(self) -> list[tuple[str, int]]:
        """The voice channel's delivery events: (status, attempt)."""
        return [(e.status, e.attempt) for e in await self.w.events(events.DeliveryStatus) if e.channel == "voice"]

    async def queued(self, tenant: str = "acme") -> list[events.OutboundMessage]:
        rows = await self.w.store.redis.xrange(Keys(tenant).outbound)
        return [events.decode_outbound(fields[b"e"]) for _id, fields in rows]


def _contact(tenant: str, **fields) -> events.InboundContact:
    return events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": tenant,
            "channel": "voice",
            "address": CUSTOMER,
            "provider_id": events.new_id(),
            "occurred_at": events.now_ms(),
            **fields,
        },
    )


def twiml(request: Received) -> ET.Element:
    return ET.fromstring(request["Twiml"])


def dialled_number(request: Received) -> ET.Element:
    [number] = twiml(request).findall("./Dial/Number")
    return number


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def voice_world() -> World:
    return await world(TENANTS, {"ACME_TWILIO_TOKEN": TOKEN})


@pytest.fixture
async def voice():
    w = await voice_world()
    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url, public_url=PUBLIC, twilio_sandbox_token=SANDBOX_TOKEN)
        sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
        async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
            yield Voice(w, api, client, sender)
        await sender.close()


async def test_an_accepted_callback_calls_the_agent_first_then_the_customer_from_the_tenants_number(voice):
    conversation = await voice.callback_accepted()
    [message] = await voice.queued()
    assert (message.channel, message.to, message.conversation) == ("voice", CUSTOMER, conversation)
    assert message.metadata == {
        "action": "callback",
        "agent": "amy",
        "agent_phone": AMY_PHONE,
        "reservation": message.metadata["reservation"],
    }
    assert await voice.dispatch() == 1
    [call] = voice.calls
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert call.auth == (ACCOUNT, TOKEN)
    assert (call["To"], call["From"]) == (AMY_PHONE, ACME_NUMBER)  # the agent first
    assert call["StatusCallback"].startswith(f"{PUBLIC}/twilio/acme/voice/callback-status?")
    assert query(call["StatusCallback"]) == {"message": message.id, "attempt": "1", "leg": "agent"}
    assert call.form.getall("StatusCallbackEvent") == ["completed"]
    response = twiml(call)
    assert response.tag == "Response"
    say, dial = list(response)
    assert (say.tag, say.text) == ("Say", GREETING)
    assert (dial.tag, dial.get("callerId")) == ("Dial", ACME_NUMBER)
    number = dialled_number(call)
    assert number.text == CUSTOMER
    assert query(number.get("statusCallback")) == {"message": message.id, "attempt": "1", "leg": "customer"}
    assert number.get("statusCallbackEvent") == "answered completed"
    [sid] = voice.api.call_sids
    record = await voice.delivery(message.id)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("sent", sid, "1")
    assert (await voice.w.conversation(conversation))["callback_outcome"] == "dialling"


async def test_the_customer_sees_the_number_they_called_when_it_is_the_tenants(voice):
    await voice.callback_accepted(to="+15005550007")
    await voice.dispatch()
    [call] = voice.calls
    assert (call["From"], twiml(call).find("Dial").get("callerId")) == ("+15005550007", "+15005550007")


async def test_accepting_a_message_contact_places_no_call(voice):
    w = voice.w
    await w.available("amy")
    await w.arrive(address=CUSTOMER)  # an SMS
    await w.accept_offer("amy")
    await w.available("zoe")
    await w.arrive(channel="voice", address="+15551239999", kind="call")
    await w.accept_offer("zoe")
    assert await voice.queued() == []
    assert voice.calls == []


async def test_a_repeated_accept_places_one_call(voice):
    await voice.callback_accepted()
    [offer_reservation] = [m.metadata["reservation"] for m in await voice.queued()]
    await agents.accept(voice.w.store, voice.w.tenant, "amy", offer_reservation)  # a retried click
    assert len(await voice.queued()) == 1
    await voice.dispatch()
    assert len(voice.calls) == 1


async def test_a_busy_customer_is_dialled_again_after_the_spacing_then_connected(voice):
    conversation = await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    before = events.now_ms()
    assert (await voice.report("customer", "busy")).status == 200
    record = await voice.delivery(message.id)
    assert (record["status"], record["error"]) == ("retry", "customer busy (dial 1 of 3)")
    due = int(await voice.w.store.redis.zscore(KEYS.retries, message.id))
    assert before + SPACING_S * 1000 <= due <= events.now_ms() + SPACING_S * 1000
    assert await voice.dispatcher.run_retries("acme") == 0  # not due yet
    assert len(voice.calls) == 1
    assert await voice.dial_again() == 1
    assert len(voice.calls) == 2
    second = voice.calls[1]
    assert (second["To"], dialled_number(second).text) == (AMY_PHONE, CUSTOMER)
    assert query(second["StatusCallback"])["attempt"] == "2"
    assert (await voice.report("customer", "in-progress")).status == 200  # answered
    record = await voice.delivery(message.id)
    assert (record["status"], record["provider_id"]) == ("connected", voice.api.call_sids[1])
    state = await voice.w.conversation(conversation)
    assert (state["callback_outcome"], state["callback_attempts"]) == ("connected", "2")
    await voice.report("customer", "completed")
    await voice.report("agent", "completed")  # the end of the call changes nothing
    assert await voice.reported() == [("sent", 1), ("retry", 1), ("sent", 2), ("connected", 2)]
    assert await voice.w.store.redis.zcard(KEYS.retries) == 0


async def test_a_customer_who_never_answers_is_recorded_no_answer_after_the_last_attempt(voice):
    conversation = await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    for dial in (1, 2, 3):
        assert len(voice.calls) == dial
        await voice.report("customer", "no-answer")
        await voice.dial_again()
    assert len(voice.calls) == 3
    record = await voice.delivery(message.id)
    assert (record["status"], record["error"]) == ("no-answer", "customer no-answer (dial 3 of 3)")
    state = await voice.w.conversation(conversation)
    assert (state["callback_outcome"], state["callback_attempts"]) == ("no-answer", "3")
    assert await voice.w.store.redis.zcard(KEYS.retries) == 0
    await voice.dial_again()
    assert len(voice.calls) == 3
    assert (await voice.reported())[-1] == ("no-answer", 3)


async def test_an_agent_who_does_not_pick_up_counts_as_a_dial(voice):
    await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    await voice.report("agent", "no-answer")
    record = await voice.delivery(message.id)
    assert (record["status"], record["error"]) == ("retry", "agent no-answer (dial 1 of 3)")


async def test_a_repeated_or_late_report_has_no_second_effect(voice):
    conversation = await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    for _ in range(3):
        assert (await voice.report("customer", "busy")).status == 200
    await voice.report("agent", "completed")  # the other leg of the same dial
    assert await voice.reported() == [("sent", 1), ("retry", 1)]
    await voice.dial_again()
    await voice.report("customer", "busy", call=0)  # the first dial, reported late
    await voice.report("agent", "completed", call=0)
    assert (await voice.delivery(message.id))["status"] == "sent"
    assert (await voice.w.conversation(conversation))["callback_attempts"] == "1"


async def test_progress_before_an_answer_decides_nothing(voice):
    await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    for status in ("queued", "initiated", "ringing"):
        assert (await voice.report("customer", status)).status == 200
    assert (await voice.delivery(message.id))["status"] == "sent"


async def test_a_forged_report_is_refused_and_changes_nothing(voice):
    await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    forged = RequestValidator("not-the-token").compute_signature(voice.calls[0]["StatusCallback"], {})
    assert (await voice.report("agent", "busy", signature=forged)).status == 403
    assert (await voice.report("customer", "busy", signature="")).status == 403
    assert (await voice.delivery(message.id))["status"] == "sent"
    assert await voice.reported() == [("sent", 1)]


async def test_a_report_without_its_dial_is_a_bad_request(voice):
    form = {"CallSid": "CA" + "0" * 32, "CallStatus": "busy"}
    url = f"{PUBLIC}/twilio/acme/voice/callback-status"
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    response = await voice.web.post(url.removeprefix(PUBLIC), data=form, headers={"X-Twilio-Signature": signature})
    assert response.status == 400


async def test_a_tenant_without_twilio_gets_the_call_in_the_sandbox_outbox(voice):
    conversation = await voice.callback_accepted("gus", "globex")
    assert await voice.dispatch("globex") == 1
    [(_entry, provider_id, kept)] = await outbox(voice.w.store, "globex")
    assert (kept.channel, kept.to, kept.conversation) == ("voice", CUSTOMER, conversation)
    assert (kept.metadata["action"], kept.metadata["agent_phone"]) == ("callback", "+15557770009")
    assert provider_id == f"sandbox-{kept.id}"
    assert voice.api.requests == []


async def test_an_agent_with_neither_a_phone_nor_the_softphone_fails_the_callback_without_calling(voice):
    # acme's Twilio account has no API key here: zoe's softphone cannot register (config check warns)
    conversation = await voice.callback_accepted("zoe")
    await voice.dispatch()
    [message] = await voice.queued()
    record = await voice.delivery(message.id)
    assert record["status"] == "failed"
    assert "neither a phone nor the softphone" in record["error"]
    assert (await voice.w.conversation(conversation))["callback_outcome"] == "failed"
    assert voice.calls == []


async def test_a_rate_limited_call_is_retried_and_an_invalid_number_fails_with_twilios_code(voice):
    await voice.callback_accepted()
    voice.api.answer(429, 20429, "Too Many Requests")
    voice.api.answer(400, 21217, "Phone number does not appear to be valid")
    await voice.dispatch()
    [message] = await voice.queued()
    assert (await voice.delivery(message.id))["status"] == "retry"
    await voice.dial_again()
    record = await voice.delivery(message.id)
    assert (record["status"], record["error"][:18]) == ("failed", "Twilio error 21217")
    await voice.dial_again()
    assert len(voice.calls) == 2


async def test_a_twilio_that_does_not_answer_in_time_is_never_dialled_again(voice):
    conversation = await voice.callback_accepted()
    voice.api.answer(201, delay=2.0)
    await voice.dispatch()
    [message] = await voice.queued()
    assert (await voice.delivery(message.id))["status"] == "unknown"
    assert (await voice.w.conversation(conversation))["callback_outcome"] == "unknown"
    await voice.w.store.redis.zadd(KEYS.retries, {message.id: 0})
    await voice.dispatcher.run_retries("acme")
    assert len(voice.calls) == 1


async def test_no_dial_again_once_the_agent_closed_the_conversation(voice):
    conversation = await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    await voice.report("customer", "busy")
    await agents.close(voice.w.store, voice.w.tenant, "amy", conversation, "no_answer")
    await voice.dial_again()
    assert len(voice.calls) == 1
    assert (await voice.delivery(message.id))["status"] == "refused"


async def test_after_a_crash_a_call_id_of_an_earlier_dial_does_not_count_as_this_one(voice):
    await voice.callback_accepted()
    await voice.dispatch()
    [message] = await voice.queued()
    await voice.report("customer", "busy")
    # dial 2 began (attempt 2) but the dispatcher died before calling Twilio
    key = KEYS.delivery(message.id)
    await voice.w.store.redis.hset(key, mapping={"status": "sending", "attempts": 2})
    assert await voice.sender.reconcile(message) == ("not_sent", "")
    await voice.w.store.redis.hset(key, "requested", 2)  # ... or while waiting for Twilio's answer
    assert await voice.sender.reconcile(message) == ("unknown", "")


async def test_a_callback_to_another_number_dials_that_number_for_the_callers_conversation(voice):
    other = "+12025550143"
    await voice.callback_accepted(metadata={"call_sid": "CA" + "0" * 32, "dial": other})
    [message] = await voice.queued()
    assert message.to == other
