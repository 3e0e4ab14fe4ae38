"""Inbound SMS: Twilio's incoming-message webhook, as a specification.

Requests are signed with twilio's own RequestValidator, as Twilio signs them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError
from twilio.request_validator import RequestValidator

from channels.sms import inbound, optout
from router import agents, events
from router.app.cli import main as cli
from router.app.web import application
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, read_inbound, route_entries, world
from tests.processes import CLI, run_cli, wait_for

ACME_SID = "AC0123456789abcdef0123456789abcdef"
ACME_TOKEN = "acme-auth-token-0123456789abcdef"
SANDBOX_TOKEN = "sandbox-token"
ACME_NUMBER = "+15550100001"
GLOBEX_NUMBER = "+15550100002"
CUSTOMER = "+15551230000"

# acme has its own Twilio account; globex has none (the sandbox token signs its webhooks).
TENANTS = f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}
twilio = {{ account_sid = "{ACME_SID}", auth_token_env = "ACME_TWILIO_TOKEN" }}
sms = {{ numbers = ["{ACME_NUMBER}"], help_text = "Acme: call 0800 ACME.", stop_text = "Acme: unsubscribed." }}

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.agents]]
id = "amy"
skills = {{ support = 1 }}

[[tenants]]
id = "globex"
sms = {{ numbers = ["{GLOBEX_NUMBER}"] }}

[[tenants.queues]]
id = "sales"
"""


@dataclass
class Twilio:
    """Plays Twilio: posts incoming-message webhooks, signed as Twilio signs them."""

    client: TestClient
    world: World
    url: str = ""  # the URL signed; default the test server's own

    def params(self, body: str = "hello", *, sender: str = CUSTOMER, to: str = ACME_NUMBER, **extra) -> dict:
        sid = f"SM{uuid.uuid4().hex}"
        account = ACME_SID if to == ACME_NUMBER else "AC" + "0" * 32
        values = {"MessageSid": sid, "SmsSid": sid, "AccountSid": account, "From": sender, "To": to}
        values.update(Body=body, NumMedia="0", ApiVersion="2010-04-01")
        values.update(extra)
        return values

    def signature(self, params: dict, *, token: str = "", url: str = "") -> str:
        token = token or (ACME_TOKEN if params.get("To") != GLOBEX_NUMBER else SANDBOX_TOKEN)
        url = url or self.url or str(self.client.make_url(inbound.PATH))
        return RequestValidator(token).compute_signature(url, params)

    async def post(self, params: dict, signature: str | None = None) -> ClientResponse:
        signature = self.signature(params) if signature is None else signature
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return await self.client.post(inbound.PATH, data=params, headers=headers)

    async def text(self, body: str = "hello", **fields) -> ClientResponse:
        return await self.post(self.params(body, **fields))

    async def inbound(self, tenant: str = "acme") -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys(tenant).inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]

    async def snapshot(self) -> dict:
        """Every key, with a stream's length and a set's members: what a refused request must not change."""
        redis = self.world.store.redis
        state = {}
        for key in sorted(await redis.keys("*")):
            kind = await redis.type(key)
            if kind == b"stream":
                state[key] = await redis.xlen(key)
            elif kind == b"set":
                state[key] = await redis.smembers(key)
            else:
                state[key] = kind
        return state


async def replies(response: ClientResponse) -> list[str]:
    """The TwiML <Message>s of a 200 answer."""
    assert response.status == 200, await response.text()
    assert response.content_type == "text/xml"
    root = ET.fromstring(await response.text())
    assert root.tag == "Response"
    return [message.text or "" for message in root.iter("Message")]


async def serve(settings: Settings) -> AsyncIterator[Twilio]:
    the_world = await world(TENANTS, {"ACME_TWILIO_TOKEN": ACME_TOKEN})
    app = application(the_world.store, the_world.deployment, settings)
    async with TestClient(TestServer(app)) as client:
        yield Twilio(client, the_world)


@pytest.fixture
async def twilio() -> AsyncIterator[Twilio]:
    async for value in serve(Settings(twilio_sandbox_token=SANDBOX_TOKEN)):
        yield value


# --- signatures --------------------------------------------------------------------


async def test_a_signed_message_becomes_one_contact_and_is_acknowledged_with_empty_twiml(twilio):
    params = twilio.params("My bill is wrong", FromCountry="US", FromCity="SPRINGFIELD")
    response = await twilio.post(params)
    assert await replies(response) == []
    [contact] = await twilio.inbound()
    assert (contact.tenant, contact.channel, contact.address, contact.to) == ("acme", "sms", CUSTOMER, ACME_NUMBER)
    assert (contact.body, contact.provider_id) == ("My bill is wrong", params["MessageSid"])
    assert contact.metadata == {"from_country": "US", "from_city": "SPRINGFIELD"}


async def test_a_tenant_without_a_twilio_account_takes_webhooks_signed_with_the_sandbox_token(twilio):
    assert await replies(await twilio.text("hi", to=GLOBEX_NUMBER)) == []
    assert [c.body for c in await twilio.inbound("globex")] == ["hi"]
    forged = twilio.params("hi", to=GLOBEX_NUMBER)
    assert (await twilio.post(forged, twilio.signature(forged, token=ACME_TOKEN))).status == 403


async def test_without_a_sandbox_token_a_tenant_without_an_account_is_refused():
    async for twilio in serve(Settings()):
        params = twilio.params("hi", to=GLOBEX_NUMBER)
        response = await twilio.post(params, twilio.signature(params, token="anything"))
        assert response.status == 403
        assert "no Twilio auth token for tenant globex" in await response.text()
        assert await twilio.inbound("globex") == []


def _changed(params: dict) -> dict:
    return {**params, "Body": "Send the refund to account 666"}


def _added(params: dict) -> dict:
    return {**params, "MediaUrl0": "https://evil.example/x.png"}


def _removed(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "ApiVersion"}


@pytest.mark.parametrize("tamper", [_changed, _added, _removed], ids=["changed", "added", "removed"])
async def test_a_tampered_form_is_refused_and_nothing_is_stored(twilio, tamper):
    before = await twilio.snapshot()
    params = twilio.params("Refund to account 123")
    response = await twilio.post(tamper(params), twilio.signature(params))
    assert response.status == 403
    assert "invalid X-Twilio-Signature" in await response.text()
    assert await twilio.snapshot() == before


@pytest.mark.parametrize(
    "signature",
    [
        lambda t, p: "",  # no header at all
        lambda t, p: t.signature(p, token="not-the-auth-token"),
        lambda t, p: t.signature(p, url="https://elsewhere.example/twilio/sms"),
        lambda t, p: t.signature(p, url=str(t.client.make_url("/twilio/sms/other"))),
        lambda t, p: "bm9wZQ==",
    ],
    ids=["missing", "wrong-token", "wrong-host", "wrong-path", "garbage"],
)
async def test_a_forged_or_unsigned_request_is_refused_and_nothing_is_stored(twilio, signature):
    before = await twilio.snapshot()
    params = twilio.params("STOP")  # not even an opt-out is taken from a forger
    response = await twilio.post(params, signature(twilio, params))
    assert response.status == 403
    assert await twilio.snapshot() == before
    assert not await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)


async def test_behind_a_proxy_the_public_url_is_checked():
    public = "https://router.example.com"
    async for twilio in serve(Settings(public_url=public)):
        params = twilio.params()
        assert (await twilio.post(params)).status == 403  # signed for the server's own address
        twilio.url = public + inbound.PATH
        assert (await twilio.text("via the proxy")).status == 200
        twilio.url = "https://router.example.com:443" + inbound.PATH  # Twilio's explicit-port variant
        assert (await twilio.text("with the port")).status == 200
        assert [c.body for c in await twilio.inbound()] == ["via the proxy", "with the port"]


async def test_signature_checking_is_off_only_when_settings_say_so(twilio):
    assert (await twilio.post(twilio.params(), signature="")).status == 403
    async for unchecked in serve(Settings(twilio_signatures=False)):
        assert (await unchecked.post(unchecked.params("trusted"), signature="")).status == 200
        assert [c.body for c in await unchecked.inbound()] == ["trusted"]


# --- malformed input ---------------------------------------------------------------


async def test_a_message_to_an_unknown_number_is_404(twilio, caplog):
    before = await twilio.snapshot()
    response = await twilio.text("hi", to="+15559999999")
    assert response.status == 404
    assert "no tenant has the number +15559999999" in await response.text()
    assert "+15559999999" in caplog.text
    assert await twilio.snapshot() == before


@pytest.mark.parametrize("name", ["From", "To", "MessageSid", "Body", "AccountSid"])
async def test_a_missing_parameter_is_400(twilio, name):
    params = {k: v for k, v in twilio.params().items() if k != name}
    response = await twilio.post(params, twilio.signature(params))
    assert response.status == 400
    assert f"missing parameters: {name}" in await response.text()
    assert await twilio.inbound() == []


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"MessageSid": "SM123"}, "malformed MessageSid"),
        ({"AccountSid": "nope"}, "malformed AccountSid"),
        ({"From": "not a number"}, "malformed From"),
        ({"NumMedia": "many"}, "malformed NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0 is missing"),
    ],
)
async def test_a_malformed_parameter_is_400(twilio, change, reason):
    params = {**twilio.params(), **change}
    response = await twilio.post(params)
    assert response.status == 400
    assert reason in await response.text()
    assert await twilio.inbound() == []


async def test_another_accounts_message_for_the_tenants_number_is_refused(twilio):
    params = twilio.params(AccountSid="AC" + "f" * 32)
    response = await twilio.post(params)
    assert response.status == 403
    assert "does not own" in await response.text()
    assert await twilio.inbound() == []


async def test_an_oversized_body_is_413(twilio):
    response = await twilio.text("x" * (65 * 1024))
    assert response.status == 413
    assert await twilio.inbound() == []


# --- delivery ----------------------------------------------------------------------


async def test_a_retried_webhook_adds_one_contact(twilio):
    params = twilio.params("only once")
    for _ in range(3):
        assert await replies(await twilio.post(params)) == []
    assert [c.body for c in await twilio.inbound()] == ["only once"]


async def test_when_the_store_is_away_the_answer_is_503_and_twilios_retry_lands(twilio, monkeypatch):
    async def broken(*_args, **_kwargs):
        raise RedisConnectionError("store down")

    params = twilio.params("are you there?")
    with monkeypatch.context() as patch:
        patch.setattr(inbound.bus, "ingest", broken)
        assert (await twilio.post(params)).status == 503
    assert await replies(await twilio.post(params)) == []
    assert [c.body for c in await twilio.inbound()] == ["are you there?"]


async def test_an_mms_brings_its_media_as_attachments(twilio):
    media = {
        "NumMedia": "2",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME2",
        "MediaContentType1": "application/pdf",
    }
    await replies(await twilio.text("", **media))
    [contact] = await twilio.inbound()
    assert [(a.url, a.content_type) for a in contact.attachments] == [
        (media["MediaUrl0"], "image/jpeg"),
        (media["MediaUrl1"], "application/pdf"),
    ]


async def test_unicode_bodies_arrive_intact(twilio):
    await replies(await twilio.text("Facture erronée 账单错误 🙁"))
    assert [c.body for c in await twilio.inbound()] == ["Facture erronée 账单错误 🙁"]


# --- opt-out keywords --------------------------------------------------------------


def mixed_case(word: str) -> str:
    return "".join(c.lower() if i % 2 else c.upper() for i, c in enumerate(word))


@pytest.mark.parametrize("word", sorted(optout.STOP_WORDS))
async def test_each_stop_word_in_any_case_suppresses_the_number(twilio, word):
    assert await replies(await twilio.text(f" {mixed_case(word)} ")) == ["Acme: unsubscribed."]
    assert await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)
    assert await twilio.inbound() == []  # no conversation opened
    [event] = await twilio.world.events(events.OptedOut)
    assert (event.address, event.keyword, event.channel) == (CUSTOMER, mixed_case(word), "sms")


@pytest.mark.parametrize("word", sorted(optout.START_WORDS))
async def test_each_start_word_in_any_case_lifts_the_suppression(twilio, word):
    await twilio.text("STOP")
    assert await replies(await twilio.text(mixed_case(word))) == [twilio.world.tenant.sms.start_text]
    assert not await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)
    assert await twilio.inbound() == []
    assert [e.keyword for e in await twilio.world.events(events.OptedIn)] == [mixed_case(word)]


@pytest.mark.parametrize("word", sorted(optout.HELP_WORDS))
async def test_each_help_word_in_any_case_is_answered_with_the_help_text(twilio, word):
    assert await replies(await twilio.text(mixed_case(word) + "!")) == ["Acme: call 0800 ACME."]
    assert await twilio.inbound() == []
    assert not await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)


async def test_stop_is_confirmed_once(twilio):
    assert await replies(await twilio.text("STOP")) == ["Acme: unsubscribed."]
    assert await replies(await twilio.text("stop")) == []
    assert await replies(await twilio.text("Unsubscribe")) == []
    assert len(await twilio.world.events(events.OptedOut)) == 1


@pytest.mark.parametrize("word, answer", [("START", "You are subscribed again"), ("HELP", "Acme: call 0800 ACME.")])
async def test_a_retried_keyword_message_answers_the_same_and_does_nothing_more(twilio, word, answer):
    await twilio.text("STOP")
    params = twilio.params(word)
    first = await replies(await twilio.post(params))
    assert len(first) == 1 and first[0].startswith(answer)
    for _ in range(2):  # Twilio retries the webhook: the opt-out already lifted, it is no message
        assert await replies(await twilio.post(params)) == first
    assert await twilio.inbound() == []
    assert len(await twilio.world.events(events.OptedIn)) == (1 if word == "START" else 0)


async def test_a_retried_yes_that_was_an_answer_is_still_one_message(twilio):
    params = twilio.params("Yes")
    for _ in range(3):
        assert await replies(await twilio.post(params)) == []
    await twilio.text("STOP")
    assert await replies(await twilio.post(params)) == []  # a late retry, after an opt-out, lifts nothing
    assert [c.body for c in await twilio.inbound()] == ["Yes"]
    assert await twilio.world.events(events.OptedIn) == []
    assert await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)


async def test_a_keyword_whose_handling_failed_is_handled_on_twilios_retry(twilio, monkeypatch):
    await twilio.text("STOP")
    params = twilio.params("START")

    async def broken(*_args, **_kwargs):
        raise RedisConnectionError("store down")

    with monkeypatch.context() as patch:
        patch.setattr(inbound.optout, "lift", broken)
        assert (await twilio.post(params)).status == 503
    assert (await replies(await twilio.post(params)))[0].startswith("You are subscribed again")
    assert not await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)
    assert await twilio.inbound() == []


async def test_a_stop_inside_a_sentence_is_an_ordinary_message(twilio):
    assert await replies(await twilio.text("Please stop charging me twice")) == []
    assert [c.body for c in await twilio.inbound()] == ["Please stop charging me twice"]
    assert not await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)


async def test_yes_from_a_number_that_never_opted_out_is_an_answer_for_the_agent(twilio):
    assert await replies(await twilio.text("Yes")) == []
    assert [c.body for c in await twilio.inbound()] == ["Yes"]
    assert await twilio.world.events(events.OptedIn) == []


async def test_an_opted_out_customer_can_still_write_in(twilio):
    await twilio.text("STOP")
    assert await replies(await twilio.text("Wait, one more question")) == []
    assert [c.body for c in await twilio.inbound()] == ["Wait, one more question"]
    assert await optout.is_suppressed(twilio.world.store, "acme", CUSTOMER)  # still: no sending to them


# --- end to end --------------------------------------------------------------------


async def test_an_inbound_text_is_routed_and_the_agents_reply_leaves_on_the_outbound_stream(twilio):
    store, tenant = twilio.world.store, twilio.world.tenant
    await twilio.world.available("amy")
    await replies(await twilio.text("My meter reading is wrong"))

    entries = await read_inbound(store, "acme")
    assert await route_entries(store, twilio.world.deployment, entries) == set(entries)

    conversation = await twilio.world.accept_offer("amy")
    sent = await agents.reply(store, tenant, "amy", conversation, "Sorry, fixing it now")
    [(_id, fields)] = await store.redis.xrange(Keys("acme").outbound)
    message = events.decode_outbound(fields[b"e"])
    assert message == sent
    assert (message.channel, message.to, message.body) == ("sms", CUSTOMER, "Sorry, fixing it now")
    assert message.conversation == conversation


# --- `contactrouter simulate sms` ----------------------------------------------------


def test_simulate_refuses_a_tenant_without_sms_numbers(write_config, capsys):
    config = write_config('[[tenants]]\nid = "initech"\n[[tenants.queues]]\nid = "q"\n')
    assert cli(["--config", str(config), "simulate", "sms", "--tenant", "initech", "--from", CUSTOMER, "hi"]) == 2
    assert capsys.readouterr().err.strip() == (
        "contactrouter: tenant initech has no SMS numbers (set [tenants.sms] numbers in its deployment file)"
    )


def simulate(store_url: str, port: int, text: str, **env: str) -> subprocess.CompletedProcess:
    """`contactrouter simulate sms` from another terminal: REDIS_URL names up's store."""
    environment = {**os.environ, "REDIS_URL": store_url, **env}
    environment.pop("CONTACTROUTER_CONFIG", None)
    args = ["simulate", "sms", "--tenant", "acme", "--from", "+15557770001", "--url", f"http://127.0.0.1:{port}", text]
    return subprocess.run([CLI, *args], env=environment, capture_output=True, text=True, timeout=30)


@pytest.mark.e2e
def test_simulate_sms_reaches_the_demo_agent_through_contactrouter_up(up: tuple[str, int]):
    store_url, port = up
    assert run_cli(store_url, "agent", "login", "--tenant", "acme", "alice").returncode == 0  # the demo starts offline
    sent = wait_for(
        lambda: (run := simulate(store_url, port, "Is my meter broken?")).returncode == 0 and run,
        "the web process to take a simulated SMS",
    )
    assert sent.stdout.strip().endswith("<Response />")

    def offered_with_text() -> str | None:
        for line in run_cli(store_url, "agent", "offers", "--tenant", "acme", "alice").stdout.splitlines():
            conversation = line.split()[2]
            if "Is my meter broken?" in run_cli(store_url, "conversation", "--tenant", "acme", conversation).stdout:
                return conversation
        return None

    assert wait_for(offered_with_text, "the simulated SMS offered to alice")

    stop = simulate(store_url, port, "STOP")
    assert stop.returncode == 0, stop.stderr
    assert "<Message>You will receive no more messages from us." in stop.stdout

    forged = simulate(store_url, port, "hi", TWILIO_SANDBOX_TOKEN="not-the-sandbox-token")
    assert forged.returncode == 2
    assert "webhook answered 403: invalid X-Twilio-Signature" in forged.stderr
