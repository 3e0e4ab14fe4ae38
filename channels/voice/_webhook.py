"""Signed voice webhooks: the form of a Twilio voice request, checked exactly as
SMS checks its own (channels._twilio_auth), and the TwiML answer.

A call's webhooks (the incoming call, the menu choice, the wait loop, status
callbacks) carry To and From, so the tenant is the owner of the voice number
called (or, for a call we placed, the number it came from). Recording and
transcription callbacks carry neither: their URLs name the tenant, as SMS
status callbacks do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_auth import read_form, verified_tenant_form
from channels._twilio_rest import TwilioClients
from router.appkeys import DEPLOYMENT, SETTINGS
from router.config import Tenant

log = logging.getLogger(__name__)

CALL_FIELDS = ("CallSid", "AccountSid", "From", "To")
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
TWILIO = web.AppKey("voice_twilio", TwilioClients)  # the webhooks' own REST calls (moving a caller's leg)


async def twilio_context(app: web.Application) -> AsyncIterator[None]:
    app[TWILIO] = TwilioClients(app[SETTINGS])
    yield
    await app[TWILIO].close()


def twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type="text/xml")


def url(request: web.Request, path: str) -> str:
    """An absolute URL of ours for Twilio to call next: PUBLIC_URL (what Twilio
    reaches behind a proxy, and what it signs) or the request's own host."""
    settings = request.app[SETTINGS]
    base = settings.public_url or f"{request.scheme}://{request.host}"
    return base + path


async def call_form(
    request: web.Request, required: tuple[str, ...] = (), *, placed_by_us: bool = False
) -> tuple[Tenant, MultiDictProxy[str]]:
    """The tenant and the verified form of a call's webhook.

    400 for missing or malformed parameters, 404 for a number no tenant owns,
    403 for a forged or unsigned request; nothing is stored before this returns.
    With placed_by_us (status callbacks), a call whose To is not ours is looked
    up by its From: the leg we dialled out from one of the tenant's numbers. So is
    any call Twilio says we placed (Direction outbound-api: a campaign call whose
    callee entered the wait loop); the tenant's token must still have signed it.
    """
    deployment, settings = request.app[DEPLOYMENT], request.app[SETTINGS]
    form = await read_form(request)
    missing = [name for name in (*CALL_FIELDS, *required) if name not in form]
    if missing:
        raise web.HTTPBadRequest(text=f"missing parameters: {', '.join(missing)}")
    tenant = deployment.tenant_by_number(form["To"], "voice")
    if tenant is None and (placed_by_us or form.get("Direction", "").startswith("outbound")):
        tenant = deployment.tenant_by_number(form["From"], "voice")
    if tenant is None:
        log.warning("call from %s to %s refused: no tenant has that voice number", form["From"], form["To"])
        raise web.HTTPNotFound(text=f"no tenant has the voice number {form['To']}")
    form = await verified_tenant_form(request, tenant, settings)
    if not CALL_SID.fullmatch(form["CallSid"]):
        raise web.HTTPBadRequest(text=f"malformed CallSid {form['CallSid']!r}")
    return tenant, form
