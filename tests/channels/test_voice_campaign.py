"""Voice campaigns: the campaigns worker queues a recipient's call, the dispatcher places
it through the real twilio client (against a local stand-in for Twilio's API) with
answering-machine detection, and signed webhooks play what Twilio would: a person who
presses 1 waits in the campaign's queue in the campaign conversation, a machine gets the
short message and a retry, 9 stops later voice campaigns, status callbacks settle it."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from channels.sandbox import outbox
from channels.voice import bridge
from channels.voice.campaign import answer
from channels.voice.outbound import VoiceSender
from router import agents, bus, conversations, events
from router.app import web
from router.campaigns import registry
from router.campaigns.model import CampaignError, parse_campaign
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.channels.twilio_api import Received, TwilioApi
from tests.factories import World, route_inbound, world
from tests.workers.campaigns import Clock, create_campaign
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "acme-auth-token-0123456789abcdef"
SANDBOX_TOKEN = "sandbox-token-0123456789"
ACME_NUMBER = "+15005550006"
JANE = "+12125550000"
AMY_PHONE = "+15557770001"
PUBLIC = "https://router.example.com"
NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)
KEYS = Keys("acme")
CAP = KEYS.contact_attempts("voice", "debt:A-1")  # Regulation F: 7 calls in 7 days per debt
BODY = "Hello Jane. Your balance of $120.00 on account A-1 is due."
OPTIONS = "To speak to an agent, press 1. To stop these calls, press 9."

TENANTS = f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}
dispositions = ["resolved", "promise_to_pay", "paid", "disputed"]
twilio = {{ account_sid = "{ACCOUNT}", auth_token_env = "ACME_TWILIO_TOKEN" }}
[tenants.voice]
numbers = ["{ACME_NUMBER}"]
language = "en-GB"
[[tenants.queues]]
id = "support"
[[tenants.queues]]
id = "collections"
[[tenants.agents]]
id = "amy"
phone = "{AMY_PHONE}"

[[tenants]]
id = "globex"
entry = {{ default = "sales" }}
voice = {{ numbers = ["+15005550009"] }}
[[tenants.queues]]
id = "sales"
"""


def campaign_toml(campaign_id: str = "dues", tenant: str = "acme", queue: str = "collections", voice: str = "") -> str:
    voice = voice or 'machine_message = "Hello {{ name }}, please call Acme about account {{ account }}."'
    return f"""
id = "{campaign_id}"
tenant = "{tenant}"
kind = "collections"
channel = "voice"
queue = "{queue}"
retry = {{ attempts = 2, spacing_minutes = 0 }}
[voice]
{voice}
[templates.voice.en]
body = "Hello {{{{ name }}}}. Your balance of {{{{ balance }}}} on account {{{{ account }}}} is due."
"""


AUDIENCE = f"phone,name,balance,account\n{JANE},Jane,$120.00,A-1\n"


class Campaigns:
    """The world, the campaigns worker, the dispatcher placing calls through the fake
    Twilio API, the web process Twilio's webhooks reach, and the clock they all read."""

    def __init__(self, w: World, api: TwilioApi, client: TestClient, sender: VoiceSender, clock: Clock) -> None:
        self.w, self.api, self.web, self.sender, self.clock = w, api, client, sender, clock
        self.dispatcher = Dispatcher(w.store, {"voice": sender})
        self.worker = CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)

    async def launch(self, definition: str = "") -> int:
        """Create, import and launch a campaign; one worker round; returns recipients handled."""
        await create_campaign(self.w, definition or campaign_toml(), AUDIENCE)
        return await self.worker.step()

    async def dispatch(self, tenant: str = "acme") -> int:
        """The dispatch worker reads the tenant's outbound stream once."""
        consumer = bus.Consumer(
            self.w.store, DISPATCH_GROUP, "d1", [Keys(tenant).outbound], self.dispatcher.handle, block_ms=1
        )
        await consumer.ensure_groups()
        return await consumer.read()

    async def queued(self, tenant: str = "acme") -> list[tuple[events.OutboundMessage, bytes]]:
        rows = await self.w.store.redis.xrange(Keys(tenant).outbound)
        return [(events.decode_outbound(fields[b"e"]), fields[b"e"]) for _id, fields in rows]

    @property
    def calls(self) -> list[Received]:
        return [r for r in self.api.requests if r.path.endswith("/Calls.json")]

    async def post(self, url: str, call: int = -1, signature: str | None = None, **fields: str) -> ClientResponse:
        """Twilio posts a webhook of a placed call to one of our URLs, signed with the tenant's token."""
        form = {
            "CallSid": self.api.call_sids[call],
            "AccountSid": ACCOUNT,
            "From": ACME_NUMBER,
            "To": JANE,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            **fields,
        }
        url = url if url.startswith("http") else PUBLIC + url
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(url, form)
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return await self.web.post(url.removeprefix(PUBLIC), data=form, headers=headers)

    async def twiml(self, url: str, call: int = -1, **fields: str) -> ET.Element:
        response = await self.post(url, call, **fields)
        assert response.status == 200, await response.text()
        return ET.fromstring(await response.text())

    async def answered_by(self, who: str, call: int = -1) -> ET.Element:
        """The callee picks up; Twilio's AMD says who, and asks what to play."""
        return await self.twiml(self.calls[call]["Url"], call, AnsweredBy=who)

    async def press(self, answer: ET.Element, digits: str) -> ET.Element:
        return await self.twiml(answer.find("Gather").get("action"), Digits=digits)

    async def delivery(self, message_id: str = "cmp-dues-1-1") -> dict[str, str]:
        record = await self.w.store.redis.hgetall(KEYS.delivery(message_id))
        return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}

    async def reported(self) -> list[tuple[str, str]]:
        """The voice delivery events: (message, status)."""
        return [(e.message, e.status) for e in await self.w.events(events.DeliveryStatus) if e.channel == "voice"]

    async def follow(self) -> None:
        """The campaigns' results follower reads every event so far (each effect is once)."""
        results = Results(self.w.store)
        for event in await self.w.events():
            await results.apply("acme", event)

    async def route(self) -> None:
        """The routing worker takes the inbound stream."""
        await route_inbound(self.w.store, self.w.deployment, KEYS.shard)

    async def status(self, campaign: str = "dues") -> str:
        return (await self.w.store.redis.hget(KEYS.campaign_status(campaign), "1") or b"").decode()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
async def campaigns():
    # Noon in New York as the worker sees it, and as the dispatcher judges the window
    with Clock(NOON_NY, ticking=True) as clock:
        async for made in _campaigns(clock):
            yield made


async def _campaigns(clock: Clock):
    w = await world(TENANTS, {"ACME_TWILIO_TOKEN": TOKEN})
    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url, public_url=PUBLIC, twilio_sandbox_token=SANDBOX_TOKEN)
        sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
        async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
            yield Campaigns(w, api, client, sender, clock)
        await sender.close()


async def test_the_call_is_placed_from_the_tenants_number_with_machine_detection(campaigns):
    assert await campaigns.launch() == 1
    assert await campaigns.dispatch() == 1
    [call] = campaigns.calls
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert call.auth == (ACCOUNT, TOKEN)
    assert (call["To"], call["From"]) == (JANE, ACME_NUMBER)
    assert call["MachineDetection"] == "DetectMessageEnd"  # a machine message is left after the beep
    assert call["Url"] == f"{PUBLIC}/twilio/acme/voice/campaign?message=cmp-dues-1-1"
    assert path(call["StatusCallback"]) == "/twilio/acme/voice/campaign/status?message=cmp-dues-1-1"
    assert call.form.getall("StatusCallbackEvent") == ["completed"]
    record = await campaigns.delivery()
    assert (record["status"], record["provider_id"]) == ("sent", campaigns.api.call_sids[0])
    assert await campaigns.w.store.redis.zrange(CAP, 0, -1) == [b"cmp-dues-1-1"]


async def test_a_person_who_presses_1_waits_in_the_campaigns_queue_in_the_campaign_conversation(campaigns):
    w = campaigns.w
    await campaigns.launch()
    await campaigns.dispatch()
    answer = await campaigns.answered_by("human")
    gather = answer.find("Gather")
    assert [(s.text, s.get("language")) for s in gather.findall("Say")] == [(BODY, "en-GB"), (OPTIONS, "en-GB")]
    assert (gather.get("input"), gather.get("numDigits")) == ("dtmf", "1")
    assert (await campaigns.delivery())["status"] == "delivered"

    queued = await campaigns.press(answer, "1")
    assert [(e.tag, path(e.text)) for e in queued] == [("Redirect", "/twilio/voice/wait?n=0")]
    [contact] = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(KEYS.inbound)]
    assert (contact.channel, contact.kind, contact.address, contact.queue) == ("voice", "call", JANE, "collections")
    assert contact.metadata["campaign"] == "dues" and contact.metadata["campaign_message"] == "cmp-dues-1-1"
    await campaigns.press(answer, "1")  # a retried webhook queues nothing more
    assert await w.store.redis.xlen(KEYS.inbound) == 1

    await campaigns.route()
    record = await w.conversation("cmp-dues-1")
    assert (record["state"], record["queue"], record["campaign"]) == ("queued", "collections", "dues")
    assert json.loads(record["campaign_context"])["balance"] == "$120.00"  # what the agent sees
    assert await w.waiting("collections") == ["cmp-dues-1"]
    history = await conversations.history(w.store, "acme", "cmp-dues-1")
    assert [(e.kind, e.channel, e.contact_kind) for e in history] == [
        ("out", "voice", "message"),
        ("in", "voice", "call"),
    ]

    # the existing wait loop takes the callee like any caller, then puts them through
    waiting = await campaigns.twiml("/twilio/voice/wait?n=0")
    assert "You are number 1 in the queue." in " ".join(s.text or "" for s in waiting.iter("Say"))
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    assert await w.accept_offer("amy") == "cmp-dues-1"
    # amy's leg is called to be screened; taken at the whisper, the callee joins her conference
    [offer] = [m for m in await w.outgoing() if m.metadata.get("action") == bridge.OFFER]
    assert (offer.to, offer.conversation) == (AMY_PHONE, "cmp-dues-1")
    callee = offer.metadata["call_sid"]
    await bridge.take(w.store, w.tenant, "cmp-dues-1", callee, "amy", "CA" + "7" * 32)
    connected = await campaigns.twiml("/twilio/voice/wait?n=1")
    assert [n.text for n in connected.iter("Conference")] == [bridge.conference_name("cmp-dues-1")]

    await campaigns.follow()
    counts = (await registry.progress(w.store, "acme", "dues")).counts
    assert (counts["sent"], counts["delivered"], counts["replied"]) == (1, 1, 1)


async def test_a_callee_who_hangs_up_while_waiting_abandoned_the_call(campaigns):
    await campaigns.launch()
    await campaigns.dispatch()
    await campaigns.press(await campaigns.answered_by("unknown"), "1")  # AMD unsure: treated as a person
    await campaigns.route()
    response = await campaigns.post(campaigns.calls[0]["StatusCallback"], CallStatus="completed", AnsweredBy="unknown")
    assert response.status == 200
    [abandoned] = await campaigns.w.events(events.Abandoned)
    assert (abandoned.conversation, abandoned.queue) == ("cmp-dues-1", "collections")
    assert (await campaigns.w.conversation("cmp-dues-1"))["disposition"] == "abandoned"
    assert await campaigns.reported() == [("cmp-dues-1-1", "sent"), ("cmp-dues-1-1", "delivered")]


async def test_a_machine_gets_the_short_message_and_the_recipient_is_called_again_by_the_retry_policy(campaigns):
    w = campaigns.w
    await campaigns.launch()
    await campaigns.dispatch()
    answer = await campaigns.answered_by("machine_end_beep")
    assert [(e.tag, e.text) for e in answer] == [
        ("Say", "Hello Jane, please call Acme about account A-1."),
        ("Hangup", None),
    ]
    record = await campaigns.delivery()
    assert record["status"] == "machine"
    assert record["error"] == "an answering machine answered (machine_end_beep): message left"

    await campaigns.follow()
    assert await campaigns.status() == "retry:2:voice"
    assert await campaigns.worker.step() == 1
    assert [m.id for m, _payload in await campaigns.queued()] == ["cmp-dues-1-1", "cmp-dues-1-2"]
    await campaigns.dispatch()
    assert [c["To"] for c in campaigns.calls] == [JANE, JANE]
    assert await w.store.redis.zcard(CAP) == 2  # each placed call counts once against 7 in 7 days

    await campaigns.answered_by("machine_end_silence")
    await campaigns.follow()
    counts = (await registry.progress(w.store, "acme", "dues")).counts
    # the last attempt left the message: delivered, not failed
    assert (counts["retried"], counts["delivered"], counts.get("failed", 0)) == (1, 1, 0)


async def test_without_a_machine_message_a_machine_is_hung_up_on_at_once(campaigns):
    await campaigns.launch(campaign_toml(voice="machine_retry = false"))
    await campaigns.dispatch()
    assert campaigns.calls[0]["MachineDetection"] == "Enable"  # no beep to wait for
    answer = await campaigns.answered_by("machine_start")
    assert [e.tag for e in answer] == ["Hangup"]
    await campaigns.follow()
    assert (await campaigns.status()).startswith("failed:1:voice:machine")


async def test_pressing_9_stops_later_voice_campaigns(campaigns):
    w = campaigns.w
    await campaigns.launch()
    await campaigns.dispatch()
    stopped = await campaigns.press(await campaigns.answered_by("human"), "9")
    assert [(e.tag, e.text) for e in stopped] == [
        ("Say", "You will not receive these calls any more. Goodbye."),
        ("Hangup", None),
    ]
    assert await w.store.redis.smembers(KEYS.suppression("voice")) == {JANE.encode()}
    [opted] = await w.events(events.OptedOut)
    assert (opted.channel, opted.address, opted.keyword) == ("voice", JANE, "9")

    await campaigns.launch(campaign_toml("dues2"))
    assert await campaigns.status("dues2") == "suppressed:opted_out"
    assert [m.id for m, _payload in await campaigns.queued()] == ["cmp-dues-1-1"]


async def test_a_call_queued_before_the_opt_out_is_not_placed_and_not_counted(campaigns):
    await campaigns.launch()
    await campaigns.launch(campaign_toml("dues2"))  # both queued before anyone answered
    (first, first_payload), (second, second_payload) = await campaigns.queued()
    await campaigns.dispatcher.deliver(first, first_payload)
    await campaigns.press(await campaigns.answered_by("human"), "9")
    assert await campaigns.dispatcher.deliver(second, second_payload) == "refused"
    assert len(campaigns.calls) == 1
    assert await campaigns.w.store.redis.zrange(CAP, 0, -1) == [b"cmp-dues-1-1"]


async def test_a_call_to_a_number_put_on_do_not_contact_after_it_was_queued_is_never_dialled(campaigns):
    await campaigns.launch()
    await campaigns.w.store.redis.sadd(KEYS.do_not_contact, JANE)
    assert await campaigns.dispatch() == 1
    assert campaigns.calls == []
    assert await campaigns.status() == "suppressed:refused_at_send:1:voice:do_not_contact"
    assert await campaigns.w.store.redis.zcard(CAP) == 0  # no call: nothing for the 7-in-7 cap


async def test_a_call_about_a_debt_disputed_after_it_was_queued_is_never_dialled(campaigns):
    await campaigns.launch()
    await campaigns.w.store.redis.sadd(KEYS.disputes, "debt:A-1")
    await campaigns.dispatch()
    assert campaigns.calls == []
    assert await campaigns.status() == "suppressed:refused_at_send:1:voice:disputed"


async def test_a_call_queued_before_a_pause_is_dialled_only_after_the_resume(campaigns):
    await campaigns.launch()
    await registry.change(campaigns.w.store, "acme", "dues", "pause")
    await campaigns.dispatch()
    assert campaigns.calls == []
    assert await campaigns.status() == "held:1:voice:paused"
    await registry.change(campaigns.w.store, "acme", "dues", "resume")
    assert await campaigns.worker.step() == 1
    assert await campaigns.dispatch() == 1
    assert len(campaigns.calls) == 1 and await campaigns.status() == "sent:1:voice"


async def test_a_call_whose_dispatch_was_delayed_past_9_pm_local_is_not_dialled(campaigns):
    await campaigns.launch()  # at noon in New York
    campaigns.clock.to(dt.datetime(2027, 6, 2, 1, 5, tzinfo=dt.UTC))  # 21:05 there
    await campaigns.dispatch()
    assert campaigns.calls == []
    assert await campaigns.status() == "held:1:voice:outside_window"


async def test_a_call_to_a_number_opted_out_since_it_was_queued_counts_suppressed_not_failed(campaigns):
    await campaigns.launch()
    await campaigns.launch(campaign_toml("dues2"))
    (first, first_payload), (second, second_payload) = await campaigns.queued()
    await campaigns.dispatcher.deliver(first, first_payload)
    await campaigns.press(await campaigns.answered_by("human"), "9")
    await campaigns.dispatcher.deliver(second, second_payload)
    await campaigns.follow()
    progress = await registry.progress(campaigns.w.store, "acme", "dues2")
    counts = progress.counts
    assert (counts["sent"], counts["failed"], counts["suppressed"], counts["retried"]) == (0, 0, 1, 0)
    assert (counts["refused_at_send"], progress.refused_at_send) == (1, {"opted_out": 1})
    assert await campaigns.status("dues2") == "suppressed:refused_at_send:1:voice:opted_out"


async def test_a_forged_webhook_is_refused_and_changes_nothing(campaigns):
    await campaigns.launch()
    await campaigns.dispatch()
    url = campaigns.calls[0]["Url"]
    forged = RequestValidator("not-the-token").compute_signature(url, {})
    assert (await campaigns.post(url, signature=forged, AnsweredBy="human")).status == 403
    assert (await campaigns.post(url, signature="", AnsweredBy="human")).status == 403
    choice = f"{PUBLIC}/twilio/acme/voice/campaign/choice?message=cmp-dues-1-1&attempt=1"
    assert (await campaigns.post(choice, signature=forged, Digits="9")).status == 403
    status = campaigns.calls[0]["StatusCallback"]
    assert (await campaigns.post(status, signature=forged, CallStatus="no-answer")).status == 403
    assert (await campaigns.delivery())["status"] == "sent"
    assert await campaigns.w.store.redis.scard(KEYS.suppression("voice")) == 0
    assert await campaigns.reported() == [("cmp-dues-1-1", "sent")]


async def test_a_redelivered_message_places_no_second_call(campaigns):
    await campaigns.launch()
    [(message, payload)] = await campaigns.queued()
    assert await campaigns.dispatcher.deliver(message, payload) == "sent"
    assert await campaigns.dispatcher.deliver(message, payload) == "sent"  # the stream entry again
    assert await campaigns.dispatch() == 1  # and through the consumer group
    assert len(campaigns.calls) == 1
    assert await campaigns.w.store.redis.zcard(CAP) == 1
    # a dispatcher that died after Twilio created the call: reconciled, never dialled again
    await campaigns.w.store.redis.hset(KEYS.delivery(message.id), "status", "sending")
    assert await campaigns.sender.reconcile(message) == ("sent", campaigns.api.call_sids[0])


async def test_no_answer_marks_the_message_so_and_schedules_the_retry(campaigns):
    await campaigns.launch()
    await campaigns.dispatch()
    status = campaigns.calls[0]["StatusCallback"]
    for _ in range(2):  # Twilio retrying the callback has no second effect
        assert (await campaigns.post(status, CallStatus="no-answer")).status == 200
    record = await campaigns.delivery()
    assert (record["status"], record["error"]) == ("no-answer", "nobody answered")
    assert await campaigns.reported() == [("cmp-dues-1-1", "sent"), ("cmp-dues-1-1", "no-answer")]
    await campaigns.post(status, CallStatus="completed")  # a late report changes nothing
    assert (await campaigns.delivery())["status"] == "no-answer"
    await campaigns.follow()
    assert await campaigns.status() == "retry:2:voice"


async def test_a_call_twilio_refuses_fails_and_gives_its_cap_attempt_back(campaigns):
    await campaigns.launch()
    campaigns.api.answer(400, 21217, "Phone number does not appear to be valid")
    await campaigns.dispatch()
    record = await campaigns.delivery()
    assert (record["status"], record["error"][:18]) == ("failed", "Twilio error 21217")
    assert await campaigns.w.store.redis.zcard(CAP) == 0  # no call was placed


async def test_a_tenant_without_twilio_gets_the_campaign_call_in_the_sandbox_outbox(campaigns):
    await campaigns.launch(campaign_toml(tenant="globex", queue="sales"))
    assert await campaigns.dispatch("globex") == 1
    [(_entry, provider_id, kept)] = await outbox(campaigns.w.store, "globex")
    assert (kept.channel, kept.to, kept.campaign) == ("voice", JANE, "dues")
    assert provider_id == f"sandbox-{kept.id}"
    assert campaigns.api.requests == []


async def test_silence_asks_once_more_then_says_goodbye(campaigns):
    await campaigns.launch()
    await campaigns.dispatch()
    again = await campaigns.press(await campaigns.answered_by("human"), "")
    assert [s.text for s in again.find("Gather").findall("Say")] == [OPTIONS]  # the options, not the message
    goodbye = await campaigns.press(again, "")
    assert [(e.tag, e.text) for e in goodbye] == [("Say", "Thank you. Goodbye."), ("Hangup", None)]
    assert await campaigns.w.store.redis.xlen(KEYS.inbound) == 0


def test_a_machine_message_that_does_not_compile_is_refused_with_its_line():
    with pytest.raises(CampaignError, match=r"voice.machine_message`: line 1"):
        parse_campaign(campaign_toml(voice='machine_message = "Hello {{ name"'))


async def test_the_machine_message_is_the_one_rendered_when_the_call_was_queued(campaigns):
    await campaigns.launch()
    [(message, _payload)] = await campaigns.queued()
    assert message.metadata["machine_message"] == "Hello Jane, please call Acme about account A-1."
    campaign, _state = await registry.load(campaigns.w.store, "acme", "dues")
    assert await answer.machine_message(campaigns.w.store, campaign, message) == message.metadata["machine_message"]
    # a call queued before messages carried it: rendered on answer, with the same limits
    older = msgspec.structs.replace(
        message, metadata={k: v for k, v in message.metadata.items() if k != "machine_message"}
    )
    assert await answer.machine_message(campaigns.w.store, campaign, older) == message.metadata["machine_message"]
    too_long = parse_campaign(
        campaign_toml(voice='machine_message = "{% for i in range(1100) %}{{ name }}{% endfor %}"')
    )
    assert await answer.machine_message(campaigns.w.store, too_long, older) == ""  # a hang-up, never a broken <Say>
