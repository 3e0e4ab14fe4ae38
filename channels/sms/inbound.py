"""Inbound SMS: Twilio's incoming-message webhook (POST /twilio/sms).

Parse the form, find the tenant by the number that was texted, check the
signature, then either answer an opt-out keyword (STOP/START/HELP) or turn the
message into an InboundContact on the tenant's inbound stream, and only then
acknowledge Twilio. A retried webhook (same MessageSid) adds nothing; a store
failure answers 500 so that Twilio retries.

A keyword message's MessageSid is claimed (SET NX) before it is acted on, and
the claim then keeps what was decided: a retried STOP/START/HELP answers the
first answer again and does nothing more (a START retried after the first one
lifted the opt-out must not become a message to an agent).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from multidict import MultiDictProxy
from redis.exceptions import RedisError
from twilio.twiml.messaging_response import MessagingResponse

from channels._twilio_auth import read_form, verified_tenant_form
from channels.sms import optout
from router import bus, events
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Tenant
from router.customers import InvalidAddress, normalise
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.store import Store

log = logging.getLogger(__name__)

PATH = "/twilio/sms"

REQUIRED = ("MessageSid", "AccountSid", "From", "To", "Body")
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
MAX_MEDIA = 10  # Twilio delivers at most 10 media items per MMS
# What Twilio tells us about where the sender is; kept for the agent.
GEO_FIELDS = {"FromCountry": "from_country", "FromState": "from_state", "FromCity": "from_city"}

_STORE_ERRORS = (RedisError, OSError)  # OSError: the connection itself

# What a keyword message's claim holds: being handled, an ordinary message after
# all (it goes on to the inbound stream, which adds it once), or the answer given.
_CLAIMED, _ORDINARY, _ANSWERED = "claimed", "message", "reply:"


def setup(app: web.Application) -> None:
    """Mount the inbound SMS webhook."""
    app.router.add_post(PATH, incoming)


def twiml(reply: str = "") -> web.Response:
    """A TwiML answer: a <Message> back to the sender, or an empty <Response/>."""
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return web.Response(text=str(response), content_type="text/xml")


async def incoming(request: web.Request) -> web.Response:
    store, deployment, settings = request.app[STORE], request.app[DEPLOYMENT], request.app[SETTINGS]
    form = await read_form(request)
    missing = [name for name in REQUIRED if name not in form]
    if missing:
        raise web.HTTPBadRequest(text=f"missing parameters: {', '.join(missing)}")
    tenant = deployment.tenant_by_number(form["To"])
    if tenant is None:
        log.warning("SMS from %s to %s refused: no tenant has that number", form["From"], form["To"])
        raise web.HTTPNotFound(text=f"no tenant has the number {form['To']}")
    # Nothing is stored before the signature (and the tenant's AccountSid) is checked.
    form = await verified_tenant_form(request, tenant, settings)
    sender = _check(form)

    try:
        word = optout.keyword(form["Body"])
        reply = await _claimed_keyword(store, tenant, sender, word, form) if word else None
        if reply is not None:
            return twiml(reply)
        contact = _contact(tenant, sender, form)
        added, entry_id = await bus.ingest(store, contact)
    except _STORE_ERRORS:
        log.exception("SMS %s for %s not stored; answering 5xx so Twilio retries", form["MessageSid"], tenant.id)
        raise web.HTTPInternalServerError(text="the message could not be stored; retry") from None
    if not added:
        log.info("SMS %s for %s was a retry of entry %s", form["MessageSid"], tenant.id, entry_id)
    return twiml()


def _check(form: MultiDictProxy[str]) -> str:
    """Validate the signed form's fields; returns the sender's E.164 number."""
    if not MESSAGE_SID.fullmatch(form["MessageSid"]):
        raise web.HTTPBadRequest(text=f"malformed MessageSid {form['MessageSid']!r}")
    try:
        return normalise("sms", form["From"])
    except InvalidAddress as exc:
        raise web.HTTPBadRequest(text=f"malformed From: {exc}") from None


async def _claimed_keyword(
    store: Store, tenant: Tenant, sender: str, word: optout.Keyword, form: MultiDictProxy[str]
) -> str | None:
    """_keyword, once per MessageSid: a retry gets the first answer back (an empty
    one while the first is still being handled) and acts on nothing."""
    claim = Keys(tenant.id).seen("sms-kw", form["MessageSid"])
    if not await store.redis.set(claim, _CLAIMED, nx=True, ex=PROVIDER_ID_TTL_S):
        first = await store.redis.get(claim)
        first = first.decode() if isinstance(first, bytes) else (first or "")
        log.info("keyword SMS %s for %s was a retry (%s)", form["MessageSid"], tenant.id, first[:16])
        if first == _ORDINARY:
            return None  # on to the inbound stream, which adds it only once
        return first.removeprefix(_ANSWERED) if first.startswith(_ANSWERED) else ""
    try:
        reply = await _keyword(store, tenant, sender, word, form)
    except _STORE_ERRORS:
        await store.redis.delete(claim)  # best effort: Twilio's retry then acts on it again
        raise
    await store.redis.set(claim, _ORDINARY if reply is None else _ANSWERED + reply, xx=True, keepttl=True)
    return reply


async def _keyword(
    store: Store, tenant: Tenant, sender: str, word: optout.Keyword, form: MultiDictProxy[str]
) -> str | None:
    """Act on an opt-out keyword; returns the TwiML reply ("" for none), or None when
    the message is an ordinary one after all."""
    if word == "help":
        return tenant.sms.help_text
    if word == "stop":
        # The event before the list: a failure in between repeats the event on
        # Twilio's retry rather than losing it. Only the first STOP is confirmed.
        if await optout.is_suppressed(store, tenant.id, sender):
            return ""
        await bus.publish(store, Keys(tenant.id).events, _opt_event(events.OptedOut, tenant, sender, form))
        return tenant.sms.stop_text if await optout.suppress(store, tenant.id, sender) else ""
    # START (or YES) from a number that never opted out is an answer, e.g. "Yes"
    # to an agent's question: it reaches the agent like any other message.
    if not await optout.is_suppressed(store, tenant.id, sender):
        return None
    await bus.publish(store, Keys(tenant.id).events, _opt_event(events.OptedIn, tenant, sender, form))
    await optout.lift(store, tenant.id, sender)
    return tenant.sms.start_text


def _opt_event(kind: type, tenant: Tenant, sender: str, form: MultiDictProxy[str]):
    return kind(
        tenant=tenant.id,
        occurred_at=events.now_ms(),
        channel="sms",
        direction="in",
        provider_id=form["MessageSid"],
        address=sender,
        keyword=form["Body"].strip()[:32],
    )


def _contact(tenant: Tenant, sender: str, form: MultiDictProxy[str]) -> events.InboundContact:
    try:
        return events.build(
            events.InboundContact,
            {
                "id": events.new_id(),
                "tenant": tenant.id,
                "channel": "sms",
                "address": sender,
                "to": form["To"],
                "provider_id": form["MessageSid"],
                "occurred_at": events.now_ms(),
                "body": form["Body"],
                "attachments": _attachments(form),
                "metadata": {key: form[name] for name, key in GEO_FIELDS.items() if form.get(name)},
            },
        )
    except events.InvalidEvent as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _attachments(form: MultiDictProxy[str]) -> list[dict[str, str]]:
    """An MMS's media: NumMedia items, each MediaUrl{i} with MediaContentType{i}."""
    raw = form.get("NumMedia", "0") or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise web.HTTPBadRequest(text=f"malformed NumMedia {raw!r}")
    media = []
    for index in range(int(raw)):
        url = form.get(f"MediaUrl{index}", "")
        if not url.startswith(("https://", "http://")):
            raise web.HTTPBadRequest(text=f"NumMedia is {raw} but MediaUrl{index} is missing or not a URL")
        content_type = form.get(f"MediaContentType{index}") or "application/octet-stream"
        media.append({"url": url, "content_type": content_type})
    return media
