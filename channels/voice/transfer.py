"""Transferring a caller's call: cold (at once) and warm (the agent consults the
colleague first, then hands over), to a colleague, a queue or an outside number the
tenant allows (`[tenants.voice] transfer_numbers`), the conversation going along.

Cold to a colleague or a queue is desk.transfer: the caller's leg goes back to the wait
loop and the conversation moves (transfer.lua). Cold to an outside number (`to_number`):
the caller's leg is redirected by REST to a Dial of the number, and the conversation is
closed as "transferred", with a note of where the call went.

Warm, on the conversation's conference (channels.voice.bridge):
1. `consult`: the caller's participant is held (hold music, desk.hold), and the colleague
   is called into the conference on their own leg (Conference Participants, create):
   their phone, else their softphone; or the outside number. The agent and the colleague
   talk; the caller hears the music and nothing of it.
2. `hand_over`: the conversation moves first (to the colleague: offered to them and
   accepted for them, as they agreed on the phone, which places no new leg, as they are
   on the call; to a number: closed as transferred), then the caller is let back in and the agent leaves the conference
   (their participant no longer ends it, then is removed). The colleague's participant
   ends the conference when they hang up, as the agent's did.
3. `cancel`: the colleague is removed and the caller let back in, to the agent.

The consultation under way is a hash (Keys.consult): the target, the colleague's
CallSid, and when it began. In the sandbox (no Twilio) consult and cancel keep the same
record and the simulated call is held; hand over is the cold transfer of a simulated call.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable

import aiohttp
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_rest import TwilioClients, TwilioError
from channels.voice import bridge, desk, inbound, simulated, softphone, waiting
from router import agents, assign, atomic, conversations, events
from router.config import Tenant
from router.keys import Keys
from router.settings import Settings
from router.store import Store, text

log = logging.getLogger(__name__)

COLLEAGUE = "colleague"
RING_S = 30
CONSULT_TTL_S = 4 * 3600
TRANSFERRED = "transferred"  # the disposition of a conversation whose call went to an outside number


class TransferError(desk.DeskError):
    """The transfer cannot be done (no such target, a number the tenant does not allow,
    no consultation under way, Twilio refused); the message says why."""


def allowed_number(tenant: Tenant, number: str) -> bool:
    return number in tenant.voice.transfer_numbers


def _target(tenant: Tenant, target: str) -> tuple[str, str]:
    """("agent", id) or ("number", E.164), checked against the tenant."""
    kind, _, name = target.partition(":")
    if kind == "agent" and name in {a.id for a in tenant.agents}:
        return kind, name
    if kind == "number" and allowed_number(tenant, name):
        return kind, name
    if kind == "number":
        raise TransferError(f"{name} is not a number calls may be transferred to")
    raise TransferError("consult a colleague (agent:<id>) or an allowed number (number:<E.164>)")


def _endpoint(tenant: Tenant, kind: str, name: str) -> str:
    if kind == "number":
        return name
    phone = softphone.phone_of(tenant, name)
    if phone:
        return phone
    if softphone.mode(tenant) == "unavailable":
        raise TransferError("your colleague has neither a phone nor the softphone")
    return softphone.CLIENT + softphone.client_identity(name)


async def _rest(call: Awaitable[object]) -> None:
    try:
        await call
    except TwilioError as exc:
        raise TransferError(f"Twilio refused: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransferError(f"Twilio did not answer: {type(exc).__name__}") from None


async def consultation(store: Store, tenant: str, conversation: str) -> dict[str, str]:
    raw = await store.redis.hgetall(Keys(tenant).consult(conversation))
    return {text(k): text(v) for k, v in raw.items()}


# --- cold, to an outside number -------------------------------------------------------


async def to_number(
    store: Store, twilio: TwilioClients, tenant: Tenant, agent: str, conversation: str, number: str
) -> None:
    """Send the caller on to an allowed outside number; the conversation closes as transferred."""
    if not allowed_number(tenant, number):
        raise TransferError(f"{number} is not a number calls may be transferred to")
    caller = await desk.callers_leg(store, tenant, agent, conversation, ("connected", waiting.HELD))
    if tenant.twilio is not None:
        response = VoiceResponse()
        response.dial(number, caller_id=next(iter(tenant.voice.numbers), None))
        await _rest(twilio.client(tenant).calls(caller).update_async(twiml=str(response)))
    await _leave_conversation(store, tenant, agent, conversation, number)
    await inbound.update_call(store, tenant.id, caller, state="closed", transferred_to=number, held="0")
    log.info("agent %s of %s sent call %s on to %s", agent, tenant.id, caller, number)


async def _leave_conversation(store: Store, tenant: Tenant, agent: str, conversation: str, number: str) -> None:
    """The call went outside: a note of where, and the conversation closed as transferred."""
    await conversations.add_note(store, tenant.id, conversation, agent, f"Call transferred to {number}")
    queue = tenant.queue((await conversations.get(store, tenant.id, conversation))["queue"])
    wrapup = queue.wrapup_seconds if queue.wrapup_seconds is not None else tenant.wrapup_seconds
    _state, freed = await atomic.close(
        store, tenant.id, conversation, by=agent, disposition=TRANSFERRED, wrapup_ms=int(wrapup * 1000)
    )
    if text(freed):
        await assign.assign_agent(store, tenant.id, agent)


# --- warm -----------------------------------------------------------------------------


async def consult(
    store: Store,
    twilio: TwilioClients,
    settings: Settings,
    tenant: Tenant,
    agent: str,
    conversation: str,
    sid: str,
    target: str,
) -> str:
    """Hold the caller and call the colleague (or number) into the conference; their CallSid."""
    kind, name = _target(tenant, target)
    if kind == "agent" and name == agent:
        raise TransferError("consult a colleague, not yourself")
    if await consultation(store, tenant.id, conversation):
        raise TransferError("a consultation is already under way: hand over or go back to the customer first")
    to = _endpoint(tenant, kind, name)
    await desk.hold(store, twilio, settings, tenant, agent, conversation, sid, on=True)
    room = await bridge.conference(store, tenant.id, conversation)
    if tenant.twilio is None:
        colleague = simulated.PREFIX + hashlib.sha256(f"{tenant.id}:{conversation}:{target}".encode()).hexdigest()[:32]
        state = "in"
    else:
        try:
            made = await (
                twilio.client(tenant)
                .conferences(room["sid"])
                .participants.create_async(
                    from_=next(iter(tenant.voice.numbers), ""),
                    to=to,
                    label=COLLEAGUE,
                    beep="false",
                    timeout=RING_S,
                    start_conference_on_enter=True,
                    end_conference_on_exit=True,  # once handed over, their hang-up ends the call
                    conference_status_callback=bridge.conference_events_url(
                        settings.base_url, tenant.id, conversation, COLLEAGUE
                    ),
                    conference_status_callback_event=bridge.CONFERENCE_EVENTS.split(),
                )
            )
        except (TwilioError, aiohttp.ClientError, TimeoutError) as exc:
            await desk.hold(store, twilio, settings, tenant, agent, conversation, sid, on=False)
            raise TransferError(f"your colleague could not be called: {exc}") from None
        colleague, state = made.call_sid, "joining"
    keys = Keys(tenant.id)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.consult(conversation),
            mapping={"target": f"{kind}:{name}", "sid": colleague, "agent": agent, "agent_call": sid,
                     "started_at": str(events.now_ms())},
        )  # fmt: skip
        pipe.expire(keys.consult(conversation), CONSULT_TTL_S)
        pipe.hset(keys.conference(conversation), f"p:{colleague}", f"{COLLEAGUE}:{kind}:{name}:{state}")
        await pipe.execute()
    log.info("agent %s of %s consults %s:%s on %s", agent, tenant.id, kind, name, conversation)
    return colleague


async def hand_over(
    store: Store,
    twilio: TwilioClients,
    settings: Settings,
    tenant: Tenant,
    agent: str,
    conversation: str,
    note: str = "",
) -> str:
    """The consulted colleague takes the call: the conversation moves, the caller is let
    back in, the agent leaves. Returns the outcome: assigned (to the colleague; offered if
    their offer could not be accepted for them) or transferred."""
    found = await consultation(store, tenant.id, conversation)
    if not found or found.get("agent") != agent:
        raise TransferError("no consultation of yours is under way on this call")
    kind, _, name = found["target"].partition(":")
    if simulated.is_simulated(found["agent_call"]):  # the sandbox: as a cold transfer of the simulated call
        await desk.hold(store, twilio, settings, tenant, agent, conversation, found["agent_call"], on=False)
        await store.redis.delete(Keys(tenant.id).consult(conversation))
        if kind == "number":
            await simulated.act(store, tenant, agent, found["agent_call"], "hangup", by="transfer")
            await _leave_conversation(store, tenant, agent, conversation, name)
            return TRANSFERRED
        return await desk.transfer(
            store, twilio, settings, tenant, agent, conversation, found["agent_call"], to_agent=name, note=note
        )
    caller = await desk.callers_leg(store, tenant, agent, conversation, ("connected",))
    call = await inbound.get_call(store, tenant.id, caller)
    agent_leg = call.get("agent_leg", "")
    keys = Keys(tenant.id)
    if kind == "agent":
        # the colleague is on the call already: their accept of the offer places no leg
        await inbound.update_call(store, tenant.id, caller, agent=name, agent_leg=found["sid"])
        try:
            outcome = await agents.transfer(store, tenant, agent, conversation, to_agent=name, note=note)
        except agents.AgentError as exc:
            await inbound.update_call(store, tenant.id, caller, agent=agent, agent_leg=agent_leg)
            raise TransferError(str(exc)) from None
        outcome = await _accepted_for(store, tenant, name, conversation, outcome)
    else:
        await _leave_conversation(store, tenant, agent, conversation, name)
        await inbound.update_call(store, tenant.id, caller, transferred_to=name)
        outcome = TRANSFERRED
    room = await bridge.conference(store, tenant.id, conversation)
    if tenant.twilio is not None and room.get("sid"):
        participants = twilio.client(tenant).conferences(room["sid"]).participants
        try:
            await _rest(participants(caller).update_async(hold=False))
            if agent_leg:
                # the agent's leaving must not end the conference: the caller and colleague stay
                await _rest(participants(agent_leg).update_async(end_conference_on_exit=False))
                await _rest(participants(agent_leg).delete_async())
        except TransferError as exc:
            log.error("call %s of %s handed over, but the conference was not changed: %s", caller, tenant.id, exc)
            raise TransferError(f"the conversation was handed over, but the call was not: {exc}") from None
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.consult(conversation))
        pipe.hset(keys.call(caller), "held", "0")
        if agent_leg:
            pipe.hset(keys.conference(conversation), f"p:{agent_leg}", f"agent:{agent}:left")
        pipe.hset(keys.conference(conversation), f"p:{found['sid']}", f"{COLLEAGUE}:{kind}:{name}:in")
        await pipe.execute()
    log.info("agent %s of %s handed call %s over to %s (%s)", agent, tenant.id, caller, found["target"], outcome)
    return outcome


async def _accepted_for(store: Store, tenant: Tenant, colleague: str, conversation: str, outcome: str) -> str:
    """The colleague agreed on the phone and is on the call: their offer is accepted for
    them ("assigned"), so it cannot time out and go to someone else while they talk.
    Should that fail (the offer ended meanwhile), it stays as it is ("offered")."""
    reservation = (await conversations.get(store, tenant.id, conversation)).get("reservation", "")
    try:
        await agents.accept(store, tenant, colleague, reservation)
    except agents.AgentError as exc:
        log.warning(
            "the offer of %s to %s of %s was not accepted for them: %s", conversation, colleague, tenant.id, exc
        )
        return outcome
    return "assigned"


async def cancel(
    store: Store, twilio: TwilioClients, settings: Settings, tenant: Tenant, agent: str, conversation: str
) -> None:
    """End the consultation: the colleague leaves, the caller is back with the agent."""
    found = await consultation(store, tenant.id, conversation)
    if not found or found.get("agent") != agent:
        raise TransferError("no consultation of yours is under way on this call")
    room = await bridge.conference(store, tenant.id, conversation)
    if tenant.twilio is not None and room.get("sid") and not simulated.is_simulated(found["sid"]):
        try:
            await twilio.client(tenant).conferences(room["sid"]).participants(found["sid"]).delete_async()
        except TwilioError as exc:
            if getattr(exc, "status", 0) != 404:  # gone already (they hung up): as good as removed
                raise TransferError(f"Twilio refused: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransferError(f"Twilio did not answer: {type(exc).__name__}") from None
    await desk.hold(store, twilio, settings, tenant, agent, conversation, found["agent_call"], on=False)
    keys = Keys(tenant.id)
    who = room.get(f"p:{found['sid']}", "").rsplit(":", 1)[0] or COLLEAGUE
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.consult(conversation))
        pipe.hset(keys.conference(conversation), f"p:{found['sid']}", f"{who}:left")
        await pipe.execute()
    log.info("agent %s of %s ended the consultation on %s", agent, tenant.id, conversation)
