"""The wait loop: a queued caller hears their position and expected wait, may ask
for a callback or leave a voicemail, and is put through once an agent takes the
call.

POST /twilio/voice/wait?n=<round> is asked again and again (each answer ends in
a Redirect back to it): the call's conversation, once routing has opened it, is
waiting (queued, offered, or taken by an agent whose leg is being screened) ->
announce the figures (every ANNOUNCE_EVERY rounds, channels.voice.estimate), hold,
come back; taken at the whisper (the call "connected", channels.voice.bridge) -> into
the conversation's conference. The bridge does not wait for a round: the agent's key
moves the caller's leg here at once (REST), and the loop answers with the conference.
POST /twilio/voice/wait/choice takes a key pressed while holding:
1 asks for a callback (POST /twilio/voice/callback confirms the caller's number
or takes another one, /twilio/voice/callback/number), 2 leaves a voicemail.

A callback replaces the call: the call's conversation is closed
("callback_requested", not an abandon) and a callback contact enters the same
queue with the call's age, so it keeps the caller's place ahead of later callers.
The callback stays the caller's (its address is the caller's number) and carries
the number to dial in metadata["dial"]; only a caller who withheld their number
becomes the customer of the number they entered. Numbers are called back only in
the tenant's callback regions ([tenants.voice.callback] regions, else the region
of its first voice number) and never premium-rate, shared-cost, UAN, VoIP,
personal or unknown numbers (toll fraud): such a number is asked for again, and
a caller whose own number is one of them (or withheld) is asked for a number
instead of being offered their own.

A caller who hangs up while the agent's leg rings or is screened is not sent back
to the queue: their status callback closes the conversation "abandoned" and counts
it once (channels.voice.status.abandoned), and the agent is not blamed.
"""

from __future__ import annotations

import logging

import phonenumbers
from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from channels.voice import bridge, estimate, inbound, recording, status, survey, voicemail
from channels.voice._webhook import call_form, twiml, url
from router import bus, conversations, events
from router.appkeys import STORE
from router.config import Tenant
from router.customers import InvalidAddress, normalise
from router.store import Store

log = logging.getLogger(__name__)

WAIT_PATH = inbound.WAIT_PATH
CHOICE_PATH = "/twilio/voice/wait/choice"
CALLBACK_PATH = "/twilio/voice/callback"
CALLBACK_NUMBER_PATH = "/twilio/voice/callback/number"
DIALED_PATH = bridge.DIALED_PATH
NumberType = phonenumbers.PhoneNumberType
# never called back, whatever the region: where a callback could be toll fraud
UNCALLABLE_TYPES = frozenset(
    {
        NumberType.PREMIUM_RATE,
        NumberType.SHARED_COST,
        NumberType.UAN,
        NumberType.VOIP,
        NumberType.PERSONAL_NUMBER,
        NumberType.UNKNOWN,
    }
)

HOLD_S = 10  # a round of the loop without hold music (the bridge itself does not wait for one)
NOT_ROUTED_PAUSE_S = 2  # routing usually opens the conversation within milliseconds
ANNOUNCE_EVERY = 3  # rounds between announcements of the position (about 30 s)
WAITING = ("queued", "reserved")
HELD = "held"  # a call's state while its agent holds it (channels.voice.softphone.hold)


def setup(app: web.Application) -> None:
    app.router.add_post(WAIT_PATH, wait)
    app.router.add_post(CHOICE_PATH, choice)
    app.router.add_post(CALLBACK_PATH, callback)
    app.router.add_post(CALLBACK_NUMBER_PATH, callback_number)
    app.router.add_post(DIALED_PATH, dialed)


async def wait(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await call_form(request)
    sid, language = form["CallSid"], tenant.voice.language
    round_ = inbound.query_int(request.query.get("n"), 0)
    response = VoiceResponse()
    await status.resolve_pending(store, tenant.id)  # calls whose hang-up came before routing
    call = await inbound.get_call(store, tenant.id, sid)
    if call.get("state") not in ("queued", "connected", HELD):
        response.say("Sorry, we cannot find your call. Please call again.", language=language)
        response.hangup()
        return twiml(response)
    if call.get("state") == HELD:  # held out of a conference (calls held before conferences): music
        _hold(request, response, tenant, None, options=False)
        response.redirect(url(request, f"{WAIT_PATH}?n={round_ + 1}"))
        return twiml(response)
    conversation = await inbound.conversation_of(store, tenant.id, sid, call)
    if conversation is None:
        if round_ == 0:
            response.say("Please hold.", language=language)
        response.pause(length=NOT_ROUTED_PAUSE_S)
        response.redirect(url(request, f"{WAIT_PATH}?n={round_ + 1}"))
        return twiml(response)
    record = await conversations.get(store, tenant.id, conversation)
    state = record.get("state")
    if call.get("state") == "connected" and state == "assigned" and record.get("agent") == call.get("agent"):
        # the agent took the call at the whisper (bridge.take): into their conference
        recorded = recording.applies(tenant, record.get("queue", ""), placed=False)
        bridge.caller_joins(request, response, tenant, conversation, recorded=recorded)
    elif state in WAITING or state == "assigned":  # waiting, or the agent's leg is being screened
        figures = await estimate.figures(store, tenant, record) if round_ % ANNOUNCE_EVERY == 0 else None
        _hold(request, response, tenant, figures)
        response.redirect(url(request, f"{WAIT_PATH}?n={round_ + 1}"))
    else:  # closed by someone else meanwhile (a supervisor, a transfer elsewhere)
        response.say("Thank you for calling. Goodbye.", language=language)
        response.hangup()
    return twiml(response)


async def announce(store: Store, tenant: Tenant, record: dict[str, str]) -> str:
    """What a waiting caller is told of their place and wait (channels.voice.estimate)."""
    return estimate.spoken(await estimate.figures(store, tenant, record))


def _options(tenant: Tenant) -> str:
    said = []
    if tenant.voice.offer_callback:
        said.append("To be called back without losing your place, press 1.")
    if tenant.voice.voicemail:
        said.append("To leave a voicemail, press 2.")
    return " ".join(said)


def _hold(
    request: web.Request,
    response: VoiceResponse,
    tenant: Tenant,
    figures: estimate.Figures | None,
    options: bool = True,
) -> None:
    """The figures (when given), the options (as a Gather, so a key works during the hold
    music too) and a round of hold music or silence. With no estimate of the wait (nobody
    can take the call now), the callback and voicemail come first."""
    language, said_options = tenant.voice.language, _options(tenant) if options else ""
    where = (
        response.gather(input="dtmf", num_digits=1, timeout=1, action=url(request, CHOICE_PATH))
        if said_options
        else response
    )
    if figures is not None:
        announcement = estimate.spoken(figures)
        unknown = figures.position > 0 and figures.wait_s is None
        for words in [said_options, announcement] if unknown else [announcement, said_options]:
            if words:
                where.say(words, language=language)
    if tenant.voice.hold_music_url:
        where.play(tenant.voice.hold_music_url)
    else:
        where.pause(length=HOLD_S)


async def choice(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await call_form(request)
    sid, digits = form["CallSid"], form.get("Digits", "")
    response = VoiceResponse()
    call = await inbound.get_call(store, tenant.id, sid)
    conversation = await inbound.conversation_of(store, tenant.id, sid, call) if call.get("state") == "queued" else None
    if conversation and digits == "1" and tenant.voice.offer_callback:
        if callable_number(tenant, call["from"]):
            _ask_number(request, response, tenant, call["from"])
        else:  # withheld, or a number we do not call: they may give another
            _ask_other_number(request, response, tenant)
    elif (
        conversation
        and digits == "2"
        and tenant.voice.voicemail
        # the voicemail replaces the call; an agent who took it meanwhile keeps it
        and await conversations.close_unanswered(store, tenant.id, conversation, "voicemail")
    ):
        await inbound.update_call(store, tenant.id, sid, state="voicemail")
        voicemail.ask(request, response, tenant)
    else:
        response.redirect(url(request, f"{WAIT_PATH}?n=1"))
    return twiml(response)


def _ask_number(request: web.Request, response: VoiceResponse, tenant: Tenant, number: str) -> None:
    gather = response.gather(input="dtmf", num_digits=1, timeout=5, action=url(request, CALLBACK_PATH))
    gather.say(
        f"We will call you back at {_spoken(number)}. To confirm, press 1. To give another number, press 2.",
        language=tenant.voice.language,
    )
    response.redirect(url(request, f"{WAIT_PATH}?n=1"))  # no answer: back to the queue, in the same place


def _ask_other_number(request: web.Request, response: VoiceResponse, tenant: Tenant) -> None:
    gather = response.gather(
        input="dtmf", num_digits=16, finish_on_key="#", timeout=10, action=url(request, CALLBACK_NUMBER_PATH)
    )
    gather.say(
        "Please enter the number to call, with its country code, then press the pound key.",
        language=tenant.voice.language,
    )
    response.redirect(url(request, f"{WAIT_PATH}?n=1"))


async def callback(request: web.Request) -> web.Response:
    tenant, form = await call_form(request)
    response = VoiceResponse()
    digits = form.get("Digits", "")
    call = await inbound.get_call(request.app[STORE], tenant.id, form["CallSid"])
    if digits == "1" and callable_number(tenant, call.get("from", "")):
        await _request_callback(request, response, tenant, form, call["from"])
    elif digits in ("1", "2"):  # "1" for a number we do not call was never offered
        _ask_other_number(request, response, tenant)
    else:
        response.redirect(url(request, f"{WAIT_PATH}?n=1"))
    return twiml(response)


async def callback_number(request: web.Request) -> web.Response:
    tenant, form = await call_form(request)
    response = VoiceResponse()
    digits = form.get("Digits", "").strip("#")
    try:
        number = normalise("voice", "+" + digits) if digits.isdigit() else ""
    except InvalidAddress:
        number = ""
    if not number or not callable_number(tenant, number):
        response.say("Sorry, that is not a number we can call.", language=tenant.voice.language)
        _ask_other_number(request, response, tenant)
    else:
        await _request_callback(request, response, tenant, form, number)
    return twiml(response)


def _region(number: phonenumbers.PhoneNumber) -> str:
    region = phonenumbers.region_code_for_number(number)
    return region or phonenumbers.region_code_for_country_code(number.country_code)


def callable_number(tenant: Tenant, number: str) -> bool:
    """Whether a callback may dial the number: a real number (not a withheld
    caller's placeholder) in one of the tenant's callback regions, and of no type
    that costs the tenant more than a call (premium, shared cost, ...)."""
    if not number or inbound.is_anonymous(number):
        return False
    try:
        parsed = phonenumbers.parse(number)
        regions = set(tenant.voice.callback.regions) or {
            _region(phonenumbers.parse(n)) for n in tenant.voice.numbers[:1]
        }
    except phonenumbers.NumberParseException:
        return False
    return _region(parsed) in regions and phonenumbers.number_type(parsed) not in UNCALLABLE_TYPES


async def _request_callback(
    request: web.Request, response: VoiceResponse, tenant: Tenant, form: MultiDictProxy[str], number: str
) -> None:
    """Replace the waiting call with a callback that keeps its place; say so, hang up.

    The call's conversation is closed before the callback is added, so routing
    opens the callback's own conversation (a contact from the same caller would
    otherwise join the call's). A retried webhook finds the conversation closed
    "callback_requested" and adds the callback once (per CallSid).

    The callback is the caller's (address: their number), whatever number it
    dials (metadata "dial"); a caller who withheld their number is the customer
    of the number they gave."""
    store = request.app[STORE]
    sid, language = form["CallSid"], tenant.voice.language
    call = await inbound.get_call(store, tenant.id, sid)
    conversation = await inbound.conversation_of(store, tenant.id, sid, call)
    if conversation is None or call.get("state") not in ("queued", "callback_requested"):
        response.redirect(url(request, f"{WAIT_PATH}?n=1"))
        return
    if not await conversations.close_unanswered(store, tenant.id, conversation, "callback_requested"):
        record = await conversations.get(store, tenant.id, conversation)
        if record.get("disposition") != "callback_requested":  # an agent took the call meanwhile
            response.redirect(url(request, f"{WAIT_PATH}?n=1"))
            return
    caller = call.get("from", "")
    contact = events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": tenant.id,
            "channel": "voice",
            "kind": "callback",
            "address": number if not caller or inbound.is_anonymous(caller) else caller,
            "to": form["To"],
            "provider_id": f"callback:{sid}",
            "occurred_at": events.now_ms(),
            "original_at": int(call.get("queued_at") or call["started_at"]),  # its place: from queue entry
            "queue": call.get("queue", ""),
            "body": f"Callback requested to {number}",
            "metadata": {"call_sid": sid, "call_conversation": conversation, "dial": number},
        },
    )
    await inbound.update_call(store, tenant.id, sid, state="callback_requested", callback_to=number)
    await bus.ingest(store, contact)
    response.say(
        f"Thank you. We will call you back at {_spoken(number)} as soon as an agent is free. Goodbye.",
        language=language,
    )
    response.hangup()


def _spoken(number: str) -> str:
    """Digits read one by one: "+15551230000" -> "1 5 5 5 1 2 3 0 0 0 0"."""
    return " ".join(c for c in number if c.isdigit())


async def dialed(request: web.Request) -> web.Response:
    """The caller's conference ended or they left it (the Dial's action). Moved out by
    the agent (a transfer: their call is queued again, or held outside a conference):
    back to the loop. The agent hung up with the caller still on the line: the keypad
    survey where the tenant asks one (channels.voice.survey). Otherwise the call is over."""
    store = request.app[STORE]
    tenant, form = await call_form(request)
    response = VoiceResponse()
    call = await inbound.get_call(store, tenant.id, form["CallSid"])
    caller_gone = form.get("CallStatus", "") in status.ENDED or bool(call.get("ended_at"))
    if not caller_gone and call.get("state") in (HELD, "queued"):
        response.redirect(url(request, f"{WAIT_PATH}?n=1"))
        return twiml(response)
    if not caller_gone and call.get("state") == "connected":
        # the agent hung up and the caller is still on the line: the keypad survey, if asked
        asked = await survey.offer(request, tenant, form["CallSid"], call)
        if asked is not None:
            return twiml(asked)
    response.hangup()
    return twiml(response)
