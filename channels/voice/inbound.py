"""Inbound calls: the greeting, the IVR menu, and the way into a queue.

POST /twilio/voice answers an incoming call: the tenant's greeting, then the
menu (a Gather of keys and speech) or, with no menu, the voice entry queue.
POST /twilio/voice/menu takes the choice; no or an unknown answer is asked once
more, then the call goes to the entry queue. A closed queue sends the caller to
voicemail (when the tenant takes voicemail). A call that enters a queue becomes
an InboundContact (kind "call") on the tenant's inbound stream, and the caller
goes on to the wait loop (channels.voice.waiting).

A caller who withheld their number is taken all the same, as "anonymous:<CallSid>"
(a customer of that one call; see _caller). Each call has a record,
Keys.call(CallSid), a hash: tenant, from, to,
started_at, queued_at (queue entry: every wait counts from it) and ivr_ms (the time in
the greeting and menu before it, kept apart), state (ivr, queued, connected, held,
callback_requested, voicemail, closed, abandoned), contact, queue, conversation once
routing opened it, agent and conference once bridged (channels.voice.bridge), Twilio's
last status, abandon_pending while a hang-up waits for routing to open the
conversation (channels.voice.status). The wait loop and the status callbacks read it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from channels.voice import voicemail
from channels.voice._webhook import call_form, twiml, url
from router import bus, events
from router.appkeys import STORE
from router.config import Tenant
from router.customers import InvalidAddress, identity, normalise
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

PATH = "/twilio/voice"
MENU_PATH = "/twilio/voice/menu"
WAIT_PATH = "/twilio/voice/wait"  # served by channels.voice.waiting

CALL_TTL_S = 7 * 24 * 3600  # a call's record outlives any callback Twilio sends about it
MENU_ATTEMPTS = 2  # the menu is asked once more on no or an unknown answer
MENU_TIMEOUT_S = 5
ANONYMOUS = "anonymous:"  # + CallSid: the address of a caller who withheld their number


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, incoming)
    app.router.add_post(MENU_PATH, menu)


# --- the call's record -------------------------------------------------------------


async def get_call(store: Store, tenant: str, call_sid: str) -> dict[str, str]:
    record = await store.redis.hgetall(Keys(tenant).call(call_sid))
    return {text(k): text(v) for k, v in record.items()}


async def update_call(store: Store, tenant: str, call_sid: str, **fields: str) -> None:
    key = Keys(tenant).call(call_sid)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, CALL_TTL_S)
        await pipe.execute()


async def conversation_of(store: Store, tenant: str, call_sid: str, call: dict[str, str]) -> str | None:
    """The conversation routing put the call's contact in, or None while it has not
    been routed yet (the routing worker takes the inbound stream asynchronously).

    The contact joined (or opened) its customer's open conversation, so that one
    and the customer's latest conversations are searched for the contact's history
    entry; once found, the call's record keeps it.
    """
    if call.get("conversation"):
        return call["conversation"]
    contact, caller = call.get("contact"), call.get("from")
    if not contact or not caller:
        return None
    keys = Keys(tenant)
    customer = await store.redis.hget(keys.identities, identity("voice", caller))
    if customer is None:
        return None
    customer = text(customer)
    candidates = [await store.redis.hget(keys.customer(customer), "open_conv")]
    candidates += await store.redis.zrevrange(keys.customer_conversations(customer), 0, 4)
    for conversation in dict.fromkeys(text(c) for c in candidates if c):
        for raw in reversed(await store.redis.lrange(keys.conversation_log(conversation), 0, -1)):
            if events.decode_history(raw).id == contact:
                await update_call(store, tenant, call_sid, conversation=conversation)
                call["conversation"] = conversation
                return conversation
    return None


async def latest_call(store: Store, tenant: str, conversation: str) -> str:
    """The CallSid of the conversation's latest call in (its contact's metadata), or ""."""
    for raw in reversed(await store.redis.lrange(Keys(tenant).conversation_log(conversation), -20, -1)):
        entry = events.decode_history(raw)
        if entry.contact_kind == "call" and entry.metadata.get("call_sid"):
            return entry.metadata["call_sid"]
    return ""


# --- webhooks ----------------------------------------------------------------------


async def incoming(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await call_form(request)
    caller = _caller(form)
    key = Keys(tenant.id).call(form["CallSid"])
    async with store.redis.pipeline(transaction=True) as pipe:  # a retried webhook keeps the first start
        pipe.hsetnx(key, "started_at", str(events.now_ms()))
        pipe.hsetnx(key, "state", "ivr")
        pipe.hset(key, mapping={"tenant": tenant.id, "from": caller, "to": form["To"], "direction": "in"})
        pipe.expire(key, CALL_TTL_S)
        await pipe.execute()
    response = VoiceResponse()
    voice = tenant.voice
    if voice.greeting:
        response.say(voice.greeting, language=voice.language)
    if not voice.menu:
        await enter_queue(request, response, tenant, form, tenant.entry_queue("voice"))
    else:
        _ask_menu(request, response, tenant, attempt=1)
    return twiml(response)


async def menu(request: web.Request) -> web.Response:
    tenant, form = await call_form(request)
    attempt = query_int(request.query.get("attempt"), 1)
    option = choose(tenant, form.get("Digits", ""), form.get("SpeechResult", ""))
    response = VoiceResponse()
    if option is not None:
        await enter_queue(request, response, tenant, form, option.queue)
    elif attempt < MENU_ATTEMPTS:
        response.say("Sorry, I did not get that.", language=tenant.voice.language)
        _ask_menu(request, response, tenant, attempt=attempt + 1)
    else:
        await enter_queue(request, response, tenant, form, tenant.entry_queue("voice"))
    return twiml(response)


def choose(tenant: Tenant, digits: str, speech: str):
    """The menu option a caller picked by key, or by saying one of its words."""
    for option in tenant.voice.menu:
        if digits and digits == option.digit:
            return option
    said = set(re.findall(r"\w+", speech.lower()))
    for option in tenant.voice.menu:
        if any(set(re.findall(r"\w+", word.lower())) <= said for word in option.speech if word.strip()):
            return option
    return None


def _ask_menu(request: web.Request, response: VoiceResponse, tenant: Tenant, attempt: int) -> None:
    voice = tenant.voice
    hints = ", ".join(word for option in voice.menu for word in option.speech)
    gather = response.gather(
        input="dtmf speech",
        num_digits=1,
        timeout=MENU_TIMEOUT_S,
        speech_timeout="auto",
        hints=hints or None,
        language=voice.language,
        action=url(request, f"{MENU_PATH}?attempt={attempt}"),
        action_on_empty_result=True,  # silence comes to the menu too: asked again, then the entry queue
    )
    gather.say(" ".join(option.label for option in voice.menu), language=voice.language)


def _is_open(tenant: Tenant, queue_id: str) -> bool:
    hours = tenant.queue(queue_id).hours
    return hours is None or hours.is_open(dt.datetime.now(dt.UTC))


async def enter_queue(
    request: web.Request, response: VoiceResponse, tenant: Tenant, form: MultiDictProxy[str], queue_id: str
) -> None:
    """Put the call in a queue (as routing's intake would pick it: after hours, an
    overflow queue), or to voicemail when the queue is closed; then wait."""
    store = request.app[STORE]
    sid, language = form["CallSid"], tenant.voice.language
    after_hours = tenant.queue(queue_id).after_hours
    if not _is_open(tenant, queue_id) and after_hours.action == "overflow":
        queue_id = after_hours.queue
    if not _is_open(tenant, queue_id):
        if tenant.voice.voicemail:
            response.say(after_hours.message, language=language)
            await update_call(store, tenant.id, sid, state="voicemail", queue=queue_id)
            voicemail.ask(request, response, tenant)
            return
        if after_hours.action != "queue":
            response.say(after_hours.message, language=language)
            response.hangup()
            await update_call(store, tenant.id, sid, state="closed", queue=queue_id)
            return
    # The wait is counted from here, queue entry, as TaskRouter and Connect count it: the
    # time in the greeting and menu is the IVR's, kept apart (ivr_ms). A retried webhook
    # keeps the first entry.
    key = Keys(tenant.id).call(sid)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(key, "queued_at", str(events.now_ms()))
        pipe.hgetall(key)
        _fresh, raw = await pipe.execute()
    call = {text(k): text(v) for k, v in raw.items()}
    queued_at = int(call["queued_at"])
    ivr_ms = max(0, queued_at - int(call.get("started_at") or queued_at))
    contact_id = call.get("contact") or events.new_id()
    try:
        contact = events.build(
            events.InboundContact,
            {
                "id": contact_id,
                "tenant": tenant.id,
                "channel": "voice",
                "kind": "call",
                "address": _caller(form),
                "to": form["To"],
                "provider_id": sid,
                "occurred_at": queued_at,  # the conversation's enqueued_at: waits count from here
                "queue": queue_id,
                "metadata": {"call_sid": sid, "ivr_ms": str(ivr_ms), "call_started_at": call.get("started_at", "")},
            },
        )
    except events.InvalidEvent as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    # The contact id is kept before the contact is added: a retried webhook then
    # names the same contact, which ingest adds only once (per CallSid).
    await update_call(store, tenant.id, sid, contact=contact_id, queue=queue_id, state="queued", ivr_ms=str(ivr_ms))
    added, entry_id = await bus.ingest(store, contact)
    if not added:
        log.info("call %s of %s was already queued (entry %s)", sid, tenant.id, entry_id)
    response.redirect(url(request, f"{WAIT_PATH}?n=0"))


def _caller(form: MultiDictProxy[str]) -> str:
    """The caller's E.164 number, or for a withheld one ("anonymous", "Restricted",
    Twilio's +266696687, anything not a phone number) "anonymous:<CallSid>": an
    address of this call alone, so anonymous callers are neither one customer
    together nor ever a real number's customer, and are never called back."""
    try:
        caller = normalise("voice", form["From"])
    except InvalidAddress:
        caller = ""
    if not caller or is_anonymous(caller):
        return ANONYMOUS + form["CallSid"]
    return caller


def is_anonymous(address: str) -> bool:
    """A caller who withheld their number (see _caller)."""
    return address.startswith(ANONYMOUS)


def query_int(value: str | None, default: int) -> int:
    """A counter from our own URL's query (signed by Twilio, so only malformed by us)."""
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default
