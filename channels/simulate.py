"""Play the provider: post webhooks signed exactly as Twilio signs them to a running
web process (`contactrouter simulate sms|call`), so the whole flow runs offline."""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import aiohttp
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

from channels.sms.inbound import PATH as SMS_PATH
from channels.voice.inbound import PATH as VOICE_PATH
from channels.voice.status import PATH as VOICE_STATUS_PATH
from router.config import Tenant
from router.errors import ContactRouterError

REDIRECT_PAUSE_S = 0.5


class SimulationError(ContactRouterError, RuntimeError):
    """The web process could not be reached or refused the webhook."""


@dataclass
class Webhooks:
    """Signed form posts to one web process, as one Twilio account."""

    url: str  # where the web process listens
    public_url: str  # what it checks signatures against (PUBLIC_URL, else url)
    token: str
    account_sid: str
    session: aiohttp.ClientSession = field(init=False)

    async def __aenter__(self) -> Webhooks:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def post(self, target: str, params: dict[str, str]) -> str:
        """Post to a path or to an absolute URL the web process gave (a TwiML action)."""
        path = target.removeprefix(self.public_url).removeprefix(self.url)
        signature = RequestValidator(self.token).compute_signature(self.public_url + path, params)
        try:
            async with self.session.post(self.url + path, data=params, headers={SIGNATURE_HEADER: signature}) as r:
                answer = await r.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SimulationError(f"cannot reach the web process at {self.url}: {exc}") from None
        if r.status != 200:
            raise SimulationError(f"webhook answered {r.status}: {answer.strip()} ({path})")
        return answer


def check_numbers(tenant: Tenant, channel: str, to: str = "") -> None:
    """A simulated customer needs one of the tenant's numbers to reach."""
    numbers = tenant.sms.numbers if channel == "sms" else tenant.voice.numbers
    if not (to or numbers):
        raise SimulationError(
            f"tenant {tenant.id} has no {channel.upper() if channel == 'sms' else channel} numbers "
            f"(set [tenants.{channel}] numbers in its deployment file)"
        )


async def sms(hooks: Webhooks, tenant: Tenant, sender: str, text: str, to: str = "", media: list[str] = ()) -> str:
    """An incoming text; returns the TwiML answer."""
    check_numbers(tenant, "sms", to)
    sid = f"SM{uuid.uuid4().hex}"
    params = {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": hooks.account_sid,
        "From": sender, "To": to or tenant.sms.numbers[0], "Body": text, "NumMedia": str(len(media)),
        "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    for index, url in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = mimetypes.guess_type(url)[0] or "application/octet-stream"
    return await hooks.post(SMS_PATH, params)


async def call(
    hooks: Webhooks,
    tenant: Tenant,
    caller: str,
    presses: list[str],
    *,
    to: str = "",
    steps: int = 12,
    hang_up: bool = False,
    on_answer=print,
) -> list[str]:
    """An incoming call, followed as Twilio follows TwiML: each Gather gets the next
    key of `presses` (or, with none left, its Redirect is followed), until a Dial, a
    Hangup or `steps` answers. Returns the TwiML answers in order."""
    check_numbers(tenant, "voice", to)
    sid = f"CA{uuid.uuid4().hex}"
    base = {
        "CallSid": sid, "AccountSid": hooks.account_sid, "From": caller, "To": to or tenant.voice.numbers[0],
        "Direction": "inbound", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    answers = []
    target, extra = VOICE_PATH, {"CallStatus": "ringing"}
    presses = list(presses)
    for _ in range(steps):
        answer = await hooks.post(target, {**base, "CallStatus": "in-progress", **extra})
        answers.append(answer)
        on_answer(answer)
        root = ET.fromstring(answer)
        if root.find("Dial") is not None or root.find("Hangup") is not None:
            break
        gather, redirect = root.find("Gather"), root.find("Redirect")
        if gather is not None and presses:
            target, extra = gather.get("action", ""), {"Digits": presses.pop(0)}
        elif redirect is not None and redirect.text:
            await asyncio.sleep(REDIRECT_PAUSE_S)  # the hold a caller would sit through, shortened
            target, extra = redirect.text.strip(), {}
        elif gather is not None:  # nothing pressed and nowhere else to go: Twilio posts the empty input
            target, extra = gather.get("action", ""), {}
        else:
            break
    if hang_up:
        await hooks.post(VOICE_STATUS_PATH, {**base, "CallStatus": "completed", "CallDuration": "30"})
    return answers
