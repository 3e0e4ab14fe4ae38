"""Callbacks: when an agent accepts a callback, the router calls the agent, then
the customer (agent first), and follows each dial to its outcome. An agent's own
call to a customer from the inbox (dial_customer) goes the same way, dialled once.
An accepted caller's call (offer_call) has its agent leg queued the same way, to be
screened and bridged (channels.voice.bridge).
The agent's leg rings their phone, else their softphone (channels.voice.softphone).

- dial_back: accept() of a conversation of kind "callback" queues one voice
  OutboundMessage on the tenant's outbound stream, with an id made from the
  reservation, once per reservation however often the accept is repeated. The
  dispatcher sends it through channels.voice.outbound.VoiceSender, at most once.
- POST /twilio/{tenant}/voice/callback-status (signed): Twilio's reports on
  both legs of a dial. The customer answering records "connected"; a busy line,
  no answer or a failure before that schedules the next dial on the
  dispatcher's retry schedule after the tenant's CallbackPolicy spacing, until
  its attempts are spent, which records "no-answer". The conversation carries
  callback_outcome and callback_attempts; each decision is a DeliveryStatus
  event. One script decides (router/lua/voice_callback.lua), so a repeated or
  late report has no second effect.
"""

from __future__ import annotations

import logging

from aiohttp import web
from redis.exceptions import WatchError

from channels._twilio_auth import tenant_form
from channels.voice import bridge, inbound, simulated, softphone
from channels.voice.outbound import CALLBACK, GREETING
from router import assign, atomic, conversations, events
from router.appkeys import STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

LEGS = ("agent", "customer")


async def dial_back(
    store: Store, tenant: Tenant, agent: str, reservation: str, again: str = ""
) -> events.OutboundMessage | None:
    """After an accept: queue the call back if the reservation's conversation is a
    callback; None if it is not. Repeating it (a retried accept) queues nothing more
    and gives back the first message, so an accept interrupted between the
    reservation and this step is completed by accepting again.

    `again` (the key of the agent's "Call now" form) dials once more after the first
    dial failed or was spent; each key dials once, however often its form is sent."""
    keys = Keys(tenant.id)
    conversation = assign.conversation_of(reservation)
    kind, address, last_address, called = await store.redis.hmget(
        keys.conversation(conversation), "kind", "address", "last_address", "tenant_address"
    )
    if kind != CALLBACK.encode():
        return None
    dial = await _number_to_dial(store, keys, conversation)
    suffix = f".{_key(again)}" if again else ""
    message = events.OutboundMessage(
        id=f"{reservation}.callback{suffix}",  # one call per accepted offer (and per Call now)
        tenant=tenant.id,
        channel="voice",
        to=dial or text(last_address or address or b""),
        sender=text(called or b""),  # the customer sees the number they called, when it is the tenant's
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=GREETING,
        agent=agent,
        metadata={
            "action": CALLBACK,
            "agent": agent,
            "agent_phone": softphone.phone_of(tenant, agent),
            "reservation": reservation,
        },
    )
    message = await _queue(store, keys, message)
    log.info("calling back %s for %s: agent %s first", message.to, tenant.id, agent)
    return message


async def dial_customer(
    store: Store, tenant: Tenant, agent: str, conversation: str, number: str, key: str
) -> events.OutboundMessage:
    """The agent calls the customer of a conversation they hold (click-to-call): their
    own phone or softphone rings first, then the customer's number, dialled once. The
    caller checks the number (the customer's, and callable_number); each form key
    places one call."""
    keys = Keys(tenant.id)
    called = text(await store.redis.hget(keys.conversation(conversation), "tenant_address") or b"")
    message = events.OutboundMessage(
        id=f"{conversation}.dial.{_key(key)}",
        tenant=tenant.id,
        channel="voice",
        to=number,
        sender=called,
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=GREETING,
        agent=agent,
        metadata={"action": softphone.DIAL, "agent": agent, "agent_phone": softphone.phone_of(tenant, agent)},
    )
    message = await _queue(store, keys, message)
    log.info("agent %s of %s calls %s", agent, tenant.id, number)
    return message


async def offer_call(store: Store, tenant: Tenant, agent: str, reservation: str) -> events.OutboundMessage | str | None:
    """After an accepted call (agents.ON_ACCEPT["call"]): call the agent's leg, which is
    screened before the caller is bridged (channels.voice.bridge), once per reservation
    however often the accept is repeated. In the sandbox an agent without a phone gets
    the call on their simulated softphone instead (its id is returned)."""
    phone = softphone.phone_of(tenant, agent)
    if softphone.mode(tenant) == "simulated" and not phone:
        return await simulated.on_accept(store, tenant, agent, reservation)
    conversation = assign.conversation_of(reservation)
    caller = await inbound.latest_call(store, tenant.id, conversation)
    if not caller:
        return None  # no caller on the line to bridge (a call's conversation without its call)
    call = await inbound.get_call(store, tenant.id, caller)
    if call.get("state") == "connected" and call.get("agent") == agent:
        return None  # handed over warm (channels.voice.transfer): the agent is on the call already
    keys = Keys(tenant.id)
    record = await conversations.get(store, tenant.id, conversation)
    message = events.OutboundMessage(
        id=f"{reservation}.{bridge.OFFER}",
        tenant=tenant.id,
        channel="voice",
        to=phone or softphone.CLIENT + softphone.client_identity(agent),
        sender=record.get("tenant_address", ""),
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=await bridge.whisper(store, tenant, record),
        agent=agent,
        metadata={
            "action": bridge.OFFER,
            "agent": agent,
            "agent_phone": phone,
            "reservation": reservation,
            "call_sid": caller,
        },
    )
    message = await _queue(store, keys, message, fresh={})
    log.info("call %s of %s taken by agent %s: their leg is called and screened", caller, tenant.id, agent)
    return message


def _key(key: str) -> str:
    """A form's idempotency key as a part of a message id: letters and digits only."""
    cleaned = "".join(c for c in key if c.isascii() and c.isalnum())[:32]
    if not cleaned:
        raise ValueError("a dial needs its form's key")
    return cleaned


async def _queue(
    store: Store, keys: Keys, message: events.OutboundMessage, fresh: dict[str, str | int] | None = None
) -> events.OutboundMessage:
    """Queue the dial once per message id; a repeat gives back the first message. `fresh`:
    the conversation's fields the dial starts with (a callback's outcome by default)."""
    payload = events.encode(message)
    seen = keys.seen("callback", message.id.removesuffix(".callback"))
    while True:
        async with store.redis.pipeline(transaction=True) as pipe:
            # WATCH makes the check and the append one step: a concurrent accept
            # aborts this transaction and then finds the first message.
            await pipe.watch(seen)
            first = await pipe.get(seen)
            if first is not None:
                await pipe.reset()
                return events.decode_outbound(first)
            pipe.multi()
            pipe.set(seen, payload, ex=7 * 24 * 3600)
            starting = {"callback_outcome": "dialling", "callback_attempts": 0} if fresh is None else fresh
            if starting:
                pipe.hset(keys.conversation(message.conversation), mapping=starting)
            pipe.xadd(keys.outbound, {"e": payload})
            try:
                await pipe.execute()
                return message
            except WatchError:
                # a concurrent accept wrote first, or the connection dropped while
                # watching (nothing written): look again
                continue


async def _number_to_dial(store: Store, keys: Keys, conversation: str) -> str:
    """The number the caller asked to be called back on (a callback contact's
    metadata "dial"), newest first; "" means the caller's own number."""
    for raw in reversed(await store.redis.lrange(keys.conversation_log(conversation), 0, -1)):
        entry = events.decode_history(raw)
        if entry.contact_kind == CALLBACK and entry.metadata.get("dial"):
            return entry.metadata["dial"]
    return ""


async def record(
    store: Store,
    tenant: Tenant,
    message: str,
    attempt: str,
    leg: str,
    status: str,
    sid: str,
    *,
    dials_allowed: int | None = None,
) -> tuple[str, str]:
    """Apply one report on a dial: ("updated", outcome) where outcome is connected,
    retry or no-answer; ("unchanged", current status); ("unknown", "") for no
    callback of ours. Dials allowed: the callback policy's, unless the dial says."""
    policy = tenant.voice.callback
    return await atomic.voice_callback(
        store,
        tenant.id,
        message_id=message,
        attempt=attempt,
        leg=leg,
        status=status,
        sid=sid,
        dials_allowed=dials_allowed or policy.attempts,
        spacing_ms=int(policy.spacing_s * 1000),
    )


async def status_callback(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("CallSid", "CallStatus"))
    message, attempt, leg = (request.query.get(name, "") for name in ("message", "attempt", "leg"))
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not message or not attempt.isdigit() or leg not in LEGS or not sid or not status:
        raise web.HTTPBadRequest(text="message, attempt, leg, CallSid and CallStatus are required")
    dials = request.query.get("dials", "")
    outcome, current = await record(
        store, tenant, message, attempt, leg, status, sid, dials_allowed=int(dials) if dials.isdigit() else None
    )
    if outcome == "unknown":
        # Answered 200 all the same: Twilio retrying would not make it ours.
        log.warning("callback report %s for unknown message %s of %s ignored", status, message, tenant.id)
    elif outcome == "updated":
        log.info("callback %s of %s: %s leg %s -> %s", message, tenant.id, leg, status, current)
    return web.Response(text="")


def setup(app: web.Application) -> None:
    """Mount the callback dialling's webhook (called by channels.voice.setup)."""
    app.router.add_post("/twilio/{tenant}/voice/callback-status", status_callback)
