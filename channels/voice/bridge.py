"""Bridging a caller to the agent who took the call: one Twilio Conference per
conversation, the agent's leg screened first.

When an agent accepts a caller's call, the router calls the agent (their phone, or
their softphone's Client) through the dispatcher (callbacks.offer_call, then
outbound.VoiceSender), with answering-machine detection on a phone. The agent leg's
TwiML is `screen`: a whisper (the queue and the customer's name) inside a Gather, "to
take it, press 1". Meanwhile the caller stays in the wait loop, hearing the hold music
and their figures, with the callback and voicemail keys still working.

- The agent presses 1 (`screen_answer`): the call is bridged at once. The agent's leg
  joins the conversation's conference (`conference_name`), which starts it, and the
  caller's leg is moved by Twilio's REST API to the wait loop, which for a "connected"
  call answers with the same conference (`caller_joins`): the caller is put through
  within a second of the key, not at the next round of the loop. Should the REST
  request fail, that next round puts them through all the same.
- A machine answers (AnsweredBy), nobody presses 1, or the agent's phone is busy, not
  answered or fails (`agent_status`): a missed offer (`missed`). The conversation goes
  back to its queue with its age, the agent is set away, and the next agent is offered
  the call; the caller, who never left the loop, keeps their place.

Every participant joins with a statusCallback (`conference_events`), which records the
conference's sid and each participant's role and state on Keys.conference(conversation):
what holding a participant (desk.hold) and, later, recording, supervisors and warm
transfer work on. Both sides end the conference when they leave (endConferenceOnExit),
so a hang-up on either side ends the call; a transfer moves the caller out, which ends
it too.

In the sandbox (no Twilio account) the same flow runs on the desk's simulated call
(channels.voice.simulated): it rings with the whisper and bridges when the agent
presses 1; an agent with a phone gets the offer in the outbox.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_auth import tenant_form
from channels._twilio_rest import TwilioError
from channels.voice import inbound, recording
from channels.voice._webhook import TWILIO, twiml, url
from router import agents, bus, conversations, events, names
from router.appkeys import STORE
from router.config import Tenant
from router.keys import Keys
from router.settings import Settings
from router.store import Store, text

log = logging.getLogger(__name__)

OFFER = "offer"  # OutboundMessage.metadata["action"] of the agent's leg of a caller's call
SCREEN_PATH = "/twilio/{tenant}/voice/screen"
SCREEN_ANSWER_PATH = "/twilio/{tenant}/voice/screen/answer"
AGENT_STATUS_PATH = "/twilio/{tenant}/voice/agent-status"
CONFERENCE_PATH = "/twilio/{tenant}/voice/conference"
HOLD_PATH = "/twilio/{tenant}/voice/hold"
WAIT_PATH = inbound.WAIT_PATH
DIALED_PATH = "/twilio/voice/dialed"  # the caller's conference ended (channels.voice.waiting.dialed)
SCREEN_TIMEOUT_S = 6  # after the whisper, how long the agent has to press 1
# An agent leg Twilio never reports on (a lost status callback) is a missed offer after
# this: the ring (30 s), machine detection and the whisper are long over by then.
OFFER_TIMER = "voffer"
OFFER_TIMEOUT_S = 120
TAKE = "1"
# AnsweredBy of a call Twilio's machine detection says no person answered
MACHINE = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
NOT_REACHED = frozenset({"busy", "no-answer", "failed", "canceled"})
CONFERENCE_EVENTS = "start end join leave hold"
ROLES = ("customer", "agent", "supervisor", "colleague")  # a colleague: a warm transfer's (channels.voice.transfer)
PARTICIPANT_STATES = {
    "participant-join": "in",
    "participant-leave": "left",
    "participant-hold": "held",
    "participant-unhold": "in",
}


def setup(app: web.Application) -> None:
    app.router.add_post(SCREEN_PATH, screen)
    app.router.add_post(SCREEN_ANSWER_PATH, screen_answer)
    app.router.add_post(AGENT_STATUS_PATH, agent_status)
    app.router.add_post(CONFERENCE_PATH, conference_events)
    app.router.add_post(HOLD_PATH, hold_music)


# --- names and URLs -----------------------------------------------------------------


def conference_name(conversation: str) -> str:
    """The Twilio Conference of a conversation's call: one per conversation."""
    return f"conv-{conversation}"


def offer_query(conversation: str, call: str, agent: str, reservation: str) -> str:
    return urlencode({"conversation": conversation, "call": call, "agent": agent, "reservation": reservation})


def screen_url(settings: Settings, tenant: str, query: str) -> str:
    return settings.base_url + SCREEN_PATH.format(tenant=tenant) + "?" + query


def agent_status_url(settings: Settings, tenant: str, query: str) -> str:
    return settings.base_url + AGENT_STATUS_PATH.format(tenant=tenant) + "?" + query


def _conference_url(request: web.Request, tenant: str, conversation: str, role: str) -> str:
    return conference_events_url(url(request, ""), tenant, conversation, role)


def conference_events_url(base: str, tenant: str, conversation: str, role: str) -> str:
    """The conference's statusCallback, naming the conversation and the participant's role."""
    query = urlencode({"conversation": conversation, "role": role})
    return base + CONFERENCE_PATH.format(tenant=tenant) + "?" + query


def hold_url(base: str, tenant: Tenant) -> tuple[str, str]:
    """What a caller hears while the conference waits for the agent or the agent holds
    them, and its method: the tenant's hold music (GET, so Twilio caches it), else our
    words and a pause (`hold_music`)."""
    if tenant.voice.hold_music_url:
        return tenant.voice.hold_music_url, "GET"
    return base + HOLD_PATH.format(tenant=tenant.id), "POST"


# --- TwiML ------------------------------------------------------------------------


def caller_joins(
    request: web.Request, response: VoiceResponse, tenant: Tenant, conversation: str, *, recorded: bool = False
) -> None:
    """The caller's leg into the conversation's conference, told first when the call is
    recorded; when the conference ends, the Dial's action (waiting.dialed) says what follows."""
    if recorded:
        recording.consent(response, tenant)
    wait, method = hold_url(url(request, ""), tenant)
    dial = response.dial(action=url(request, DIALED_PATH), method="POST")
    dial.conference(
        conference_name(conversation),
        start_conference_on_enter=False,  # hold music until the agent's leg is in
        end_conference_on_exit=True,
        beep=False,
        wait_url=wait,
        wait_method=method,
        participant_label="customer",
        status_callback=_conference_url(request, tenant.id, conversation, "customer"),
        status_callback_event=CONFERENCE_EVENTS,
        status_callback_method="POST",
    )
    response.hangup()


def agent_joins(request: web.Request, response: VoiceResponse, tenant: Tenant, conversation: str) -> None:
    """The agent's leg into the conference, which starts it."""
    dial = response.dial()
    dial.conference(
        conference_name(conversation),
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        beep=False,
        participant_label="agent",
        status_callback=_conference_url(request, tenant.id, conversation, "agent"),
        status_callback_event=CONFERENCE_EVENTS,
        status_callback_method="POST",
    )
    response.hangup()


async def whisper(store: Store, tenant: Tenant, record: dict[str, str]) -> str:
    """What the agent hears before taking a call: the queue and the customer's name."""
    queue_id = record.get("queue", "")
    queue = next((q.name or q.id for q in tenant.queues if q.id == queue_id), queue_id)
    customer = (await names.records(store, tenant.id, [record.get("customer", "")])).get(record.get("customer", ""), {})
    who = names.known_name(customer) or "a caller we have no name for"
    return f"A call from the {queue} queue: {who}. To take it, press {TAKE}."


# --- the offer: still standing, taken, missed ---------------------------------------


async def _standing(
    store: Store, tenant: str, conversation: str, caller: str, agent: str, reservation: str
) -> tuple[dict[str, str], dict[str, str]] | None:
    """The conversation and the caller's call while this offer can still be taken: the
    conversation is with the agent under this reservation and the caller is waiting."""
    record = await conversations.get(store, tenant, conversation)
    if record.get("state") != "assigned" or record.get("agent") != agent:
        return None
    if reservation and record.get("reservation", reservation) != reservation:
        return None
    call = await inbound.get_call(store, tenant, caller)
    if call.get("state") not in ("queued", "connected") or call.get("ended_at"):
        return None
    found = await inbound.conversation_of(store, tenant, caller, call)
    if found is not None and found != conversation:  # (None: not looked up by the loop yet)
        return None
    return record, call


async def take(store: Store, tenant: Tenant, conversation: str, caller: str, agent: str, agent_leg: str) -> bool:
    """The agent took the call: the caller's call is "connected" to them in the
    conversation's conference. Returns whether this was the first take (a repeat
    changes nothing)."""
    keys = Keys(tenant.id)
    now = str(events.now_ms())
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(keys.call(caller), "bridged_at", now)
        pipe.hset(
            keys.call(caller),
            mapping={"state": "connected", "agent": agent, "conference": conference_name(conversation),
                     "agent_leg": agent_leg},
        )  # fmt: skip
        pipe.expire(keys.call(caller), inbound.CALL_TTL_S)
        pipe.hset(
            keys.conference(conversation),
            mapping={"name": conference_name(conversation), "conversation": conversation, "caller": caller,
                     f"p:{caller}": "customer:joining", f"p:{agent_leg}": f"agent:{agent}:joining"},
        )  # fmt: skip
        pipe.expire(keys.conference(conversation), inbound.CALL_TTL_S)
        first, *_ = await pipe.execute()
    if first:
        log.info("agent %s of %s took call %s: bridged in %s", agent, tenant.id, caller, conference_name(conversation))
    return bool(first)


async def missed(
    store: Store, tenant: Tenant, agent: str, conversation: str, caller: str, reservation: str, why: str
) -> bool:
    """The agent did not take the call (not answered, busy, a machine, no key): the
    offer goes on to the next agent, the caller keeps their place (their call's age),
    and the agent, who is not at their phone, is set away. Returns whether this report
    counted it: a late or repeated one, or one after the call was taken, does nothing."""
    if await _standing(store, tenant.id, conversation, caller, agent, reservation) is None:
        return False
    call = await inbound.get_call(store, tenant.id, caller)
    if call.get("state") == "connected":
        return False
    record = await conversations.get(store, tenant.id, conversation)
    try:
        await agents.transfer(store, tenant, agent, conversation, to_queue=record["queue"], note=f"agent phone {why}")
    except agents.AgentError:
        return False  # closed or moved meanwhile
    await agents.set_presence(store, tenant, agent, "away", "missed call")
    # the reports' per-agent missed column counts timed-out offers: a missed screening is one
    # (after its accept: the offer was taken on screen, the call was not)
    missed_offer = events.TimedOut(
        tenant=tenant.id, occurred_at=events.now_ms(), conversation=conversation, channel="voice",
        reservation=reservation, agent=agent, queue=record.get("queue", ""),
    )  # fmt: skip
    await bus.publish(store, Keys(tenant.id).events, missed_offer, dedup=f"missed-screening:{reservation}:{caller}")
    log.warning("agent %s of %s missed call %s (%s): offered on", agent, tenant.id, caller, why)
    return True


async def expect_report(
    store: Store, tenant: str, conversation: str, caller: str, agent: str, reservation: str
) -> None:
    """After the agent's leg is placed: a timer that makes the offer a missed one if Twilio
    never says how the leg went (timers.EXTRA[OFFER_TIMER], `report_overdue`)."""
    member = f"{OFFER_TIMER}:{conversation}|{caller}|{agent}|{reservation}"
    await store.redis.zadd(Keys(tenant).timers, {member: events.now_ms() + OFFER_TIMEOUT_S * 1000})


async def report_overdue(store: Store, tenant: Tenant, rest: str) -> None:
    """The offer's timer came due: still neither taken nor missed, it is missed now (a
    taken, missed, abandoned or moved offer is no longer standing: nothing happens)."""
    conversation, caller, agent, reservation = [*rest.split("|"), "", "", ""][:4]
    if await missed(
        store, tenant, agent, conversation, caller, reservation, "no report from Twilio on the agent's leg"
    ):
        log.warning("no report on the agent leg of %s (%s, agent %s): missed offer", caller, tenant.id, agent)


# --- webhooks: the agent's leg --------------------------------------------------------


def _offer_of(request: web.Request) -> tuple[str, str, str, str]:
    """The offer our own (signed) URL names: conversation, caller's CallSid, agent, reservation."""
    found = tuple(request.query.get(name, "") for name in ("conversation", "call", "agent", "reservation"))
    if not all(found[:3]):
        raise web.HTTPBadRequest(text="conversation, call and agent are required")
    return found  # type: ignore[return-value]


async def screen(request: web.Request) -> web.Response:
    """The agent's leg answered: a machine is a missed offer; a person hears the whisper."""
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid",))
    conversation, caller, agent, reservation = _offer_of(request)
    language = tenant.voice.language
    response = VoiceResponse()
    standing = await _standing(store, tenant.id, conversation, caller, agent, reservation)
    if standing is None:
        response.say("The caller is no longer waiting. Goodbye.", language=language)
        response.hangup()
        return twiml(response)
    if form.get("AnsweredBy", "") in MACHINE:
        await missed(store, tenant, agent, conversation, caller, reservation, f"answered by {form['AnsweredBy']}")
        response.hangup()
        return twiml(response)
    record, _call = standing
    await inbound.update_call(store, tenant.id, caller, screening=form["CallSid"])
    query = offer_query(conversation, caller, agent, reservation)
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=SCREEN_TIMEOUT_S,
        action=url(request, SCREEN_ANSWER_PATH.format(tenant=tenant.id) + "?" + query),
        action_on_empty_result=True,  # no key comes to screen_answer too: a missed offer
    )
    gather.say(await whisper(store, tenant, record), language=language)
    return twiml(response)


async def screen_answer(request: web.Request) -> web.Response:
    """1: bridge now (the agent joins the conference; the caller's leg is moved into it).
    Anything else, or nothing: a missed offer."""
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid",))
    conversation, caller, agent, reservation = _offer_of(request)
    language = tenant.voice.language
    response = VoiceResponse()
    if await _standing(store, tenant.id, conversation, caller, agent, reservation) is None:
        response.say("The caller is no longer waiting. Goodbye.", language=language)
        response.hangup()
        return twiml(response)
    if form.get("Digits", "") != TAKE:
        await missed(store, tenant, agent, conversation, caller, reservation, "not taken at the whisper")
        response.say("The call goes to a colleague. Goodbye.", language=language)
        response.hangup()
        return twiml(response)
    if await take(store, tenant, conversation, caller, agent, form["CallSid"]):
        record = await conversations.get(store, tenant.id, conversation)
        if recording.applies(tenant, record.get("queue", ""), placed=False):
            # before the caller is moved, so the consent they hear is in the recording too
            await recording.start(store, request.app[TWILIO], url(request, ""), tenant, conversation, caller)
        await move_caller(request, tenant, caller)
    agent_joins(request, response, tenant, conversation)
    return twiml(response)


async def move_caller(request: web.Request, tenant: Tenant, caller: str) -> None:
    """Move the caller's leg out of its hold music into the wait loop now, which joins
    it to the conference; if Twilio cannot be reached, the loop's next round does."""
    if tenant.twilio is None:
        return  # the sandbox's simulated webhooks read the state at their next round
    try:
        await (
            request.app[TWILIO]
            .client(tenant)
            .calls(caller)
            .update_async(url=url(request, f"{WAIT_PATH}?n=0"), method="POST")
        )
    except (TwilioError, aiohttp.ClientError, TimeoutError) as exc:
        log.error("call %s of %s not moved to its agent at once (%s): the wait loop's next round will",
                  caller, tenant.id, type(exc).__name__)  # fmt: skip


async def agent_status(request: web.Request) -> web.Response:
    """The agent's leg ended: not reached (busy, no answer, failed, cancelled) or ended
    before taking the call is a missed offer; after taking it, nothing to do here."""
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid", "CallStatus"))
    conversation, caller, agent, reservation = _offer_of(request)
    status = form["CallStatus"]
    if status in NOT_REACHED or status == "completed":
        why = f"{status}" if status in NOT_REACHED else "hung up before taking the call"
        await missed(store, tenant, agent, conversation, caller, reservation, why)
    return web.Response(text="")


# --- webhooks: the conference -----------------------------------------------------------


async def conference_events(request: web.Request) -> web.Response:
    """A conference's statusCallback: its sid, and each participant's role and state."""
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("ConferenceSid", "StatusCallbackEvent"))
    conversation, role = request.query.get("conversation", ""), request.query.get("role", "")
    if not conversation or role not in ROLES:
        raise web.HTTPBadRequest(text="conversation and role are required")
    key = Keys(tenant.id).conference(conversation)
    event, sid = form["StatusCallbackEvent"], form.get("CallSid", "")
    fields = {"sid": form["ConferenceSid"], "name": form.get("FriendlyName", conference_name(conversation))}
    if event == "conference-start":
        fields["started_at"] = str(events.now_ms())
    elif event == "conference-end":
        fields["ended_at"] = str(events.now_ms())
    elif event in PARTICIPANT_STATES and sid:
        before = text(await store.redis.hget(key, f"p:{sid}") or b"")
        who = before.rsplit(":", 1)[0] if before else role
        fields[f"p:{sid}"] = f"{who}:{PARTICIPANT_STATES[event]}"
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, inbound.CALL_TTL_S)
        await pipe.execute()
    return web.Response(text="")


async def conference(store: Store, tenant: str, conversation: str) -> dict[str, str]:
    """The conversation's conference record (Keys.conference)."""
    raw = await store.redis.hgetall(Keys(tenant).conference(conversation))
    return {text(k): text(v) for k, v in raw.items()}


async def hold_music(request: web.Request) -> web.Response:
    """The waitUrl and holdUrl of a tenant without hold music: a word, then quiet."""
    tenant, _form = await tenant_form(request, ())
    response = VoiceResponse()
    response.say("Please hold.", language=tenant.voice.language)
    response.pause(length=30)
    response.redirect(url(request, HOLD_PATH.format(tenant=tenant.id)))
    return twiml(response)
