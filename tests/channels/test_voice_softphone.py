"""The softphone with a Twilio account: the access token the page registers with, the
agent's Client that calls ring, hold and transfer of a caller's call through Twilio's
REST API, callbacks and the agent's own calls ringing the softphone first. The real
twilio library runs against a local stand-in for Twilio's API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import jwt
import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from channels.voice import bridge, inbound, softphone, waiting
from channels.voice.outbound import VoiceSender
from router import customers
from router.app.inbox import accounts, second_factor
from router.app.web import application
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_voice_callbacks import Voice, dialled_number, query
from tests.channels.twilio_api import TwilioApi
from tests.channels.voice_phone import ACME_NUMBER, ACME_SID, ACME_TOKEN, CALLER, SANDBOX_TOKEN, TENANTS, Phone, twiml
from tests.factories import World, world
from tests.router.test_inbox_pages import PASSWORD, SECRET, cheap_hashes, csrf_of, log_in  # noqa: F401 - fixture

API_KEY = "SK" + "5" * 32
KEY_SECRET = "key-secret-0123456789abcdef0123456789"
ACCOUNT_LINE = f'twilio = {{ account_sid = "{ACME_SID}", auth_token_env = "ACME_TWILIO_TOKEN" }}'
WITH_KEY = (
    TENANTS.replace(
        ACCOUNT_LINE,
        ACCOUNT_LINE.removesuffix(" }") + f', api_key_sid = "{API_KEY}", api_key_secret_env = "ACME_TWILIO_KEY" }}',
    )
    + '\n[[tenants.agents]]\nid = "gus"\n'
)  # globex (the sandbox) gets an agent
ENV = {"ACME_TWILIO_TOKEN": ACME_TOKEN, "ACME_TWILIO_KEY": KEY_SECRET}
WAIT = f"{waiting.WAIT_PATH}?n=0"


@dataclass
class Desk:
    phone: Phone  # Twilio's webhooks
    api: TwilioApi  # Twilio's REST API
    sender: VoiceSender
    since: int = 0  # requests to the fake API before the test's own

    @property
    def world(self) -> World:
        return self.phone.world

    async def agent(self, login: str, tenant: str = "acme") -> tuple[ClientSession, str]:
        """A browser logged in as the agent `login` of `tenant`, and its CSRF token."""
        await accounts.add(self.world.store, login, PASSWORD, "agent", {tenant: login})
        client = ClientSession(base_url=str(self.phone.client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
        assert (await log_in(client, login)).status == 303
        return client, csrf_of(await (await client.get("/inbox")).text())

    async def call_with(self, agent: str) -> str:
        """A caller waits, the agent accepts, takes it at the whisper, and both legs are in
        the conversation's conference (its sid recorded); the conversation."""
        await self.phone.answer(inbound.PATH)
        await self.phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
        await self.phone.route()
        await self.world.available(agent)
        conversation = await self.world.accept_offer(agent)
        assert await Voice(self.world, self.api, self.phone.client, self.sender).dispatch() == 1
        leg = self.api.call_sids[-1]
        taken = self.phone.params(sid=leg, Digits="1", To=f"client:{agent}", Direction="outbound-api")
        taken["From"] = ACME_NUMBER
        answer_path = (
            bridge.SCREEN_ANSWER_PATH.format(tenant="acme")
            + "?"
            + bridge.offer_query(
                conversation, self.phone.sid, agent, (await self.world.conversation(conversation))["reservation"]
            )
        )
        assert (await twiml(await self.phone.post(answer_path, taken))).one("Conference") is not None
        assert (await self.phone.answer(WAIT)).one("Conference").text == bridge.conference_name(conversation)
        joined = {"AccountSid": ACME_SID, "ConferenceSid": "CF" + "3" * 32, "CallSid": self.phone.sid,
                  "StatusCallbackEvent": "participant-join"}  # fmt: skip
        events_path = bridge.CONFERENCE_PATH.format(tenant="acme") + f"?conversation={conversation}&role=customer"
        assert (await self.phone.post(events_path, joined)).status == 200
        self.since = len(self.api.requests)  # what the softphone does next is what a test looks at
        return conversation

    @property
    def updates(self) -> list:
        return [r for r in self.api.requests[self.since :] if "/Calls/" in r.path or "/Participants/" in r.path]


async def desk_of(text: str, env: dict[str, str]) -> AsyncIterator[Desk]:
    w = await world(text, env)
    async with TwilioApi() as api:
        settings = Settings(twilio_sandbox_token=SANDBOX_TOKEN, twilio_api_base=api.url)
        sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
        async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
            yield Desk(Phone(client, w), api, sender)
        await sender.close()


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(WITH_KEY, ENV):
        yield value


# --- the access token ---


async def test_the_token_is_signed_with_the_api_key_and_names_the_client_the_wait_loop_dials(desk):
    client, token = await desk.agent("zoe")
    async with client:
        await desk.call_with("zoe")
        dialled = desk.api.requests[0]["To"].removeprefix("client:")  # the Client the agent's leg calls
        response = await client.post("/inbox/t/acme/softphone/token", headers={"X-CSRF-Token": token})
        assert response.status == 200
        body = await response.json()
    assert (body["mode"], body["identity"], body["ttl_s"]) == ("twilio", dialled, softphone.TOKEN_TTL_S)
    claims = jwt.decode(body["token"], KEY_SECRET, algorithms=["HS256"])
    assert (claims["iss"], claims["sub"]) == (API_KEY, ACME_SID)
    assert claims["grants"] == {"identity": dialled, "voice": {"incoming": {"allow": True}}}  # nothing outgoing
    assert time.time() < claims["exp"] <= time.time() + softphone.TOKEN_TTL_S
    assert jwt.get_unverified_header(body["token"])["cty"] == "twilio-fpa;v=1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], ACME_TOKEN, algorithms=["HS256"])  # not the auth token's


async def test_a_token_is_only_for_a_seat_of_the_users_own(desk):
    zoe, zoe_token = await desk.agent("zoe")
    gus, gus_token = await desk.agent("gus", "globex")
    await accounts.add(desk.world.store, "sue", PASSWORD, "supervisor", {"acme": ""})
    await second_factor.activate(desk.world.store, "sue", SECRET)  # supervisors need one
    sue = ClientSession(base_url=str(desk.phone.client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
    async with zoe, gus, sue:
        other = await zoe.post("/inbox/t/globex/softphone/token", headers={"X-CSRF-Token": zoe_token})
        assert other.status == 404  # another tenant's: not even there
        assert "token" not in await other.text()
        await log_in(sue, "sue")
        sue_token = csrf_of(await (await sue.get("/inbox")).text())
        assert (await sue.post("/inbox/t/acme/softphone/token", headers={"X-CSRF-Token": sue_token})).status == 404
        sandbox = await gus.post("/inbox/t/globex/softphone/token", headers={"X-CSRF-Token": gus_token})
        assert await sandbox.json() == {"mode": "simulated", "identity": "gus"}  # no Twilio: no token
        seats = await (await zoe.post("/inbox/softphone/seats", headers={"X-CSRF-Token": zoe_token})).json()
        assert [(s["tenant"], s["agent"], s["mode"]) for s in seats["seats"]] == [("acme", "zoe", "twilio")]


async def test_without_a_session_the_token_is_refused_401(desk):
    async with ClientSession(base_url=str(desk.phone.client.make_url("/"))) as stranger:
        response = await stranger.post("/inbox/t/acme/softphone/token", allow_redirects=False)
        assert response.status == 401
        assert "token" not in await response.text()


async def test_an_account_without_an_api_key_gives_no_softphone(desk):
    async for plain in desk_of(TENANTS, {"ACME_TWILIO_TOKEN": ACME_TOKEN}):
        client, token = await plain.agent("zoe")
        async with client:
            response = await client.post("/inbox/t/acme/softphone/token", headers={"X-CSRF-Token": token})
        assert response.status == 409
        assert (await response.json())["mode"] == "unavailable"


# --- hold and transfer: the caller's leg moved through Twilio's REST API ---


async def test_a_held_caller_hears_hold_music_in_the_conference_and_the_agent_stays(desk):
    client, token = await desk.agent("zoe")
    async with client:
        conversation = await desk.call_with("zoe")
        body = {"conversation": conversation, "call": "CA" + "9" * 32, "on": True}  # the agent's leg's sid
        response = await client.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": token})
        assert response.status == 200, await response.text()
        [update] = desk.updates
        # the caller's participant, at the address Twilio reaches us at (PUBLIC_URL, else host and port)
        assert update.path.endswith(f"/Conferences/{'CF' + '3' * 32}/Participants/{desk.phone.sid}.json")
        assert (update["Hold"], update["HoldUrl"]) == ("true", f"{Settings().base_url}/twilio/acme/voice/hold")
        assert (await desk.phone.call_record())["held"] == "1"
        held = await desk.phone.answer("/twilio/acme/voice/hold", AccountSid=ACME_SID)
        assert held.verbs == ["Say", "Pause", "Redirect"]

        body["on"] = False
        response = await client.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": token})
        assert response.status == 200
        assert [u["Hold"] for u in desk.updates] == ["true", "false"]
        assert (await desk.phone.call_record())["state"] == "connected"


async def test_a_held_caller_is_hung_up_by_the_router_when_the_agent_hangs_up(desk):
    client, token = await desk.agent("zoe")
    async with client:
        conversation = await desk.call_with("zoe")
        body = {"conversation": conversation, "call": "CA" + "9" * 32, "on": True}
        await client.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": token})
        response = await client.post("/inbox/t/acme/softphone/hangup", json=body, headers={"X-CSRF-Token": token})
        assert await response.json() == {"ended": True}
        _hold, end = desk.updates
        assert (end.path, end["Status"]) == (
            f"/2010-04-01/Accounts/{ACME_SID}/Calls/{desk.phone.sid}.json",
            "completed",
        )
        call = await desk.phone.call_record()
        assert (call["state"], call["hung_up_by"]) == ("closed", "agent")
        again = await client.post("/inbox/t/acme/softphone/hangup", json=body, headers={"X-CSRF-Token": token})
        assert again.status == 409 and len(desk.updates) == 2  # nothing held any more


async def test_a_transferred_caller_waits_in_the_new_queue(desk):
    client, token = await desk.agent("zoe")
    async with client:
        conversation = await desk.call_with("zoe")
        body = {"conversation": conversation, "call": "CA" + "9" * 32, "target": "queue:billing", "note": "refund"}
        response = await client.post("/inbox/t/acme/softphone/transfer", json=body, headers={"X-CSRF-Token": token})
        assert await response.json() == {"transferred": "queued"}
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["queue"]) == ("queued", "billing")
    call = await desk.phone.call_record()
    assert (call["state"], call["agent"]) == ("queued", "")
    [update] = desk.updates
    assert update.path.endswith(f"/Calls/{desk.phone.sid}.json")
    assert (await desk.phone.answer(f"{waiting.WAIT_PATH}?n=1")).verbs == ["Gather", "Redirect"]  # waiting again


async def test_a_call_that_is_not_the_agents_cannot_be_held(desk):
    amy, amy_token = await desk.agent("amy")
    zoe, _token = await desk.agent("zoe")
    async with amy, zoe:
        conversation = await desk.call_with("zoe")
        body = {"conversation": conversation, "call": "CA" + "9" * 32, "on": True}
        response = await amy.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": amy_token})
        assert response.status == 409  # amy sees the conversation (her queue), the call is not hers
        assert (await desk.phone.call_record())["state"] == "connected"
        assert desk.updates == []


# --- calls the router places: the softphone rings first ---


@pytest.fixture
async def voice(desk):
    yield Voice(desk.world, desk.api, desk.phone.client, desk.sender)


async def test_a_callback_accepted_by_an_agent_without_a_phone_rings_their_softphone_first(desk, voice):
    conversation = await voice.callback_accepted("zoe")
    assert await voice.dispatch() == 1
    [call] = voice.calls
    assert call["To"] == f"client:{softphone.client_identity('zoe')}"
    assert dialled_number(call).text == "+15551230000"
    assert (await voice.w.conversation(conversation))["callback_outcome"] == "dialling"
    # Twilio rings it without the parameters of a <Client> dial: the page asks what it is
    zoe, zoe_token = await desk.agent("zoe")
    amy, amy_token = await desk.agent("amy")
    async with zoe, amy:
        body = {"call": voice.api.call_sids[0]}
        response = await zoe.post("/inbox/t/acme/softphone/placed", json=body, headers={"X-CSRF-Token": zoe_token})
        assert await response.json() == {"conversation": conversation, "customer": "+15551230000", "kind": "callback"}
        response = await amy.post("/inbox/t/acme/softphone/placed", json=body, headers={"X-CSRF-Token": amy_token})
        assert response.status == 404  # not amy's call


async def test_the_agent_calls_the_customer_from_the_conversation_softphone_first_dialled_once(desk):
    client, token = await desk.agent("zoe")
    async with client:
        await desk.world.available("zoe")
        conversation = await desk.world.arrive(address=CALLER, body="call me please")  # an SMS
        await desk.world.accept_offer("zoe")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert f'action="/inbox/t/acme/c/{conversation}/dial"' in page
        form = {"csrf": token, "number": CALLER, "key": "k1"}
        for _ in range(2):  # sent twice: one call
            response = await client.post(f"/inbox/t/acme/c/{conversation}/dial", data=form)
            assert "Calling the customer: your phone or softphone rings first." in await response.text()
    [message] = [m for m in await desk.world.outgoing() if m.channel == "voice"]
    assert (message.to, message.metadata["action"], message.metadata["agent"]) == (CALLER, softphone.DIAL, "zoe")
    voice = Voice(desk.world, desk.api, desk.phone.client, desk.sender)
    assert await voice.dispatch() == 1
    [call] = voice.calls
    assert call["To"] == "client:zoe"
    assert dialled_number(call).text == CALLER
    assert query(call["StatusCallback"])["dials"] == "1"  # the agent's own call is not dialled again
    assert query(dialled_number(call).get("statusCallback"))["dials"] == "1"
    # Twilio reports that the customer did not answer, to the URL the TwiML gave
    url = dialled_number(call).get("statusCallback").removeprefix(Settings().base_url)
    form = {"CallSid": "CA" + "7" * 32, "CallStatus": "no-answer", "AccountSid": ACME_SID, "From": "x", "To": CALLER}
    signature = RequestValidator(ACME_TOKEN).compute_signature(str(desk.phone.client.make_url(url)), form)
    assert (await desk.phone.client.post(url, data=form, headers={"X-Twilio-Signature": signature})).status == 200
    assert (await desk.world.conversation(conversation))["callback_outcome"] == "no-answer"  # not dialled again
    assert await desk.world.store.redis.zcard(Keys("acme").retries) == 0


@pytest.mark.parametrize(
    ("number", "refusal"),
    [
        ("+19002345678", "is outside the tenant&#39;s regions or a number type that costs more"),  # premium rate
        ("+442079460000", "is outside the tenant&#39;s regions or a number type that costs more"),  # not US
        ("+12025550143", "call one of the customer&#39;s own numbers"),
    ],
)
async def test_a_number_a_callback_would_not_dial_is_not_called(desk, number, refusal):
    client, token = await desk.agent("zoe")
    async with client:
        await desk.world.available("zoe")
        conversation = await desk.world.arrive(address=CALLER, body="hi")
        await desk.world.accept_offer("zoe")
        record = await desk.world.conversation(conversation)
        if number != "+12025550143":  # the customer's own, linked by an agent
            await customers.link(desk.world.store, "acme", record["customer"], customers.identity("voice", number))
        response = await client.post(
            f"/inbox/t/acme/c/{conversation}/dial", data={"csrf": token, "number": number, "key": "k1"}
        )
        assert response.status == 409
        assert refusal in await response.text()
    assert [m for m in await desk.world.outgoing() if m.channel == "voice"] == []


async def test_the_vendored_sdk_is_served_to_a_logged_in_page(desk):
    client, _token = await desk.agent("zoe")
    async with client:
        response = await client.get("/inbox/static/vendor/twilio.min.js")
        assert response.status == 200 and response.content_type == "application/javascript"
        assert "Twilio.Device=Twilio.Device||Voice.Device" in await response.text()
        assert (await client.get("/inbox/static/vendor/MANIFEST.json")).status == 404  # only the scripts
        ring = await client.get("/inbox/softphone/sounds/incoming.wav")
        assert ring.content_type == "audio/wav" and (await ring.read())[:4] == b"RIFF"
    async with ClientSession(base_url=str(desk.phone.client.make_url("/"))) as stranger:
        assert (await stranger.get("/inbox/static/vendor/twilio.min.js", allow_redirects=False)).status == 302
