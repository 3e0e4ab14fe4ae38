"""Plays Twilio Voice for the voice tests: signed call webhooks, TwiML read back as
XML, and routing of what the webhooks put on the inbound stream."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from router import events
from router.app.web import application
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, route_inbound, world

ACME_SID = "AC0123456789abcdef0123456789abcdef"
ACME_TOKEN = "acme-auth-token-0123456789abcdef"
SANDBOX_TOKEN = "sandbox-token"
ACME_NUMBER = "+15550100001"
GLOBEX_NUMBER = "+15550100002"
CALLER = "+12015551230"  # a valid US number: one a callback may dial
AMY_PHONE = "+15557000001"

# acme: its own Twilio account, a menu (support, billing, and a queue that is
# always closed), amy with a phone, zoe with none (a browser client).
# globex: the sandbox, no menu.
TENANTS = f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}
twilio = {{ account_sid = "{ACME_SID}", auth_token_env = "ACME_TWILIO_TOKEN" }}

[tenants.voice]
numbers = ["{ACME_NUMBER}"]
language = "en-GB"
greeting = "Thank you for calling Acme."
expected_handle_seconds = 240

[[tenants.voice.menu]]
digit = "1"
label = "For support, press 1."
queue = "support"
speech = ["support", "help"]

[[tenants.voice.menu]]
digit = "2"
label = "For billing, press 2."
queue = "billing"
speech = ["billing", "bill", "invoice"]

[[tenants.voice.menu]]
digit = "3"
label = "For the night desk, press 3."
queue = "night"
speech = ["night"]

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.queues]]
id = "night"
hours = {{ timezone = "UTC" }}  # no opening hours at all: always closed

[[tenants.agents]]
id = "amy"
skills = {{ support = 1 }}
phone = "{AMY_PHONE}"

[[tenants.agents]]
id = "zoe"
skills = {{ support = 1 }}

[[tenants.agents]]
id = "bill"
skills = {{ billing = 1 }}

[[tenants]]
id = "globex"
entry = {{ default = "sales" }}

[tenants.voice]
numbers = ["{GLOBEX_NUMBER}"]
greeting = "Globex, hello."

[[tenants.queues]]
id = "sales"
"""


def new_sid(prefix: str = "CA") -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class Answer:
    """A TwiML answer, parsed."""

    root: ET.Element

    @property
    def verbs(self) -> list[str]:
        return [child.tag for child in self.root]

    def all(self, tag: str) -> list[ET.Element]:
        return list(self.root.iter(tag))

    def one(self, tag: str) -> ET.Element:
        [element] = self.all(tag)
        return element

    def said(self) -> str:
        return " ".join(say.text or "" for say in self.root.iter("Say"))

    def path(self, tag: str, attribute: str = "action") -> str:
        """The path and query of a URL the answer points Twilio at."""
        element = self.one(tag)
        value = element.text if attribute == "text" else element.get(attribute)
        parts = urlsplit(value or "")
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Phone:
    """Plays Twilio: posts a call's webhooks, signed as Twilio signs them."""

    client: TestClient
    world: World
    sid: str = field(default_factory=new_sid)

    def params(self, *, caller: str = CALLER, to: str = ACME_NUMBER, sid: str = "", **extra: str) -> dict:
        account = ACME_SID if to == ACME_NUMBER else "AC" + "0" * 32
        values = {
            "CallSid": sid or self.sid,
            "AccountSid": account,
            "From": caller,
            "To": to,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        values.update(extra)
        return values

    def signature(self, path: str, params: dict, *, token: str = "") -> str:
        token = token or (SANDBOX_TOKEN if params.get("To") == GLOBEX_NUMBER else ACME_TOKEN)
        return RequestValidator(token).compute_signature(str(self.client.make_url(path)), params)

    async def post(self, path: str, params: dict, signature: str | None = None) -> ClientResponse:
        signature = self.signature(path, params) if signature is None else signature
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return await self.client.post(path, data=params, headers=headers)

    async def answer(self, path: str, **fields: str) -> Answer:
        """Post a call webhook and read back its TwiML."""
        response = await self.post(path, self.params(**fields))
        return await twiml(response)

    async def inbound(self, tenant: str = "acme") -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys(tenant).inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]

    async def route(self, tenant: str = "acme") -> None:
        """What the routing worker does with what arrived on the inbound stream."""
        await route_inbound(self.world.store, self.world.deployment, tenant)

    async def call_record(self, sid: str = "") -> dict[str, str]:
        record = await self.world.store.redis.hgetall(Keys("acme").call(sid or self.sid))
        return {k.decode(): v.decode() for k, v in record.items()}

    async def snapshot(self) -> dict:
        """Every key with a stream's length: what a refused request must not change."""
        redis = self.world.store.redis
        state = {}
        for key in sorted(await redis.keys("*")):
            kind = await redis.type(key)
            state[key] = await redis.xlen(key) if kind == b"stream" else kind
        return state

    def another(self) -> Phone:
        """A second caller on the same test server."""
        return Phone(self.client, self.world)


# Twilio's documented TwiML verbs and nouns (twilio.com/docs/voice/twiml): an answer of
# ours may use nothing else
DOCUMENTED = frozenset(
    {
        "Response", "Say", "Play", "Pause", "Gather", "Redirect", "Hangup", "Reject", "Record", "Dial", "Number",
        "Client", "Identity", "Parameter", "Conference", "Queue", "Enqueue", "Leave", "Sip", "Connect", "Stream",
        "Start", "Stop", "Refer", "Sms", "Task", "Application",
    }
)  # fmt: skip


async def twiml(response: ClientResponse) -> Answer:
    assert response.status == 200, await response.text()
    assert response.content_type == "text/xml"
    root = ET.fromstring(await response.text())
    assert root.tag == "Response"
    assert {element.tag for element in root.iter()} <= DOCUMENTED, ET.tostring(root)
    return Answer(root)


async def serve(settings: Settings | None = None) -> AsyncIterator[Phone]:
    the_world = await world(TENANTS, {"ACME_TWILIO_TOKEN": ACME_TOKEN})
    app = application(the_world.store, the_world.deployment, settings or Settings(twilio_sandbox_token=SANDBOX_TOKEN))
    async with TestClient(TestServer(app)) as client:
        yield Phone(client, the_world)
