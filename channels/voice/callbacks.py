"""Callbacks: when an agent accepts a callback, the router calls the agent, then
the customer (agent first), and follows each dial to its outcome.

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
from channels.voice.outbound import CALLBACK, GREETING
from router import assign, atomic, events
from router.appkeys import STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

LEGS = ("agent", "customer")


async def dial_back(store: Store, tenant: Tenant, agent: str, reservation: str) -> events.OutboundMessage | None:
    """After an accept: queue the call back if the reservation's conversation is a
    callback; None if it is not. Repeating it (a retried accept) queues nothing more
    and gives back the first message, so an accept interrupted between the
    reservation and this step is completed by accepting again."""
    keys = Keys(tenant.id)
    conversation = assign.conversation_of(reservation)
    kind, address, last_address, called = await store.redis.hmget(
        keys.conversation(conversation), "kind", "address", "last_address", "tenant_address"
    )
    if kind != CALLBACK.encode():
        return None
    dial = await _number_to_dial(store, keys, conversation)
    phone = next((a.phone for a in tenant.agents if a.id == agent), "")
    message = events.OutboundMessage(
        id=f"{reservation}.callback",  # one call per accepted offer, whatever is repeated
        tenant=tenant.id,
        channel="voice",
        to=dial or text(last_address or address or b""),
        sender=text(called or b""),  # the customer sees the number they called, when it is the tenant's
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=GREETING,
        agent=agent,
        metadata={"action": CALLBACK, "agent": agent, "agent_phone": phone, "reservation": reservation},
    )
    payload = events.encode(message)
    seen = keys.seen("callback", reservation)
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
            pipe.hset(keys.conversation(conversation), mapping={"callback_outcome": "dialling", "callback_attempts": 0})
            pipe.xadd(keys.outbound, {"e": payload})
            try:
                await pipe.execute()
                break
            except WatchError:
                # a concurrent accept wrote first, or the connection dropped while
                # watching (nothing written): look again
                continue
    log.info("calling back %s for %s: agent %s first", message.to, tenant.id, agent)
    return message


async def _number_to_dial(store: Store, keys: Keys, conversation: str) -> str:
    """The number the caller asked to be called back on (a callback contact's
    metadata "dial"), newest first; "" means the caller's own number."""
    for raw in reversed(await store.redis.lrange(keys.conversation_log(conversation), 0, -1)):
        entry = events.decode_history(raw)
        if entry.contact_kind == CALLBACK and entry.metadata.get("dial"):
            return entry.metadata["dial"]
    return ""


async def record(
    store: Store, tenant: Tenant, message: str, attempt: str, leg: str, status: str, sid: str
) -> tuple[str, str]:
    """Apply one report on a dial: ("updated", outcome) where outcome is connected,
    retry or no-answer; ("unchanged", current status); ("unknown", "") for no
    callback of ours."""
    policy = tenant.voice.callback
    return await atomic.voice_callback(
        store,
        tenant.id,
        message_id=message,
        attempt=attempt,
        leg=leg,
        status=status,
        sid=sid,
        dials_allowed=policy.attempts,
        spacing_ms=int(policy.spacing_s * 1000),
    )


async def status_callback(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("CallSid", "CallStatus"))
    message, attempt, leg = (request.query.get(name, "") for name in ("message", "attempt", "leg"))
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not message or not attempt.isdigit() or leg not in LEGS or not sid or not status:
        raise web.HTTPBadRequest(text="message, attempt, leg, CallSid and CallStatus are required")
    outcome, current = await record(store, tenant, message, attempt, leg, status, sid)
    if outcome == "unknown":
        # Answered 200 all the same: Twilio retrying would not make it ours.
        log.warning("callback report %s for unknown message %s of %s ignored", status, message, tenant.id)
    elif outcome == "updated":
        log.info("callback %s of %s: %s leg %s -> %s", message, tenant.id, leg, status, current)
    return web.Response(text="")


def setup(app: web.Application) -> None:
    """Mount the callback dialling's webhook (called by channels.voice.setup)."""
    app.router.add_post("/twilio/{tenant}/voice/callback-status", status_callback)
