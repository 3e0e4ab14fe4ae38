"""How a campaign call went, as its outbound message's delivery state.

The answer webhook knows first who picked up: a person (delivered), an answering
machine ("machine"), a fax ("refused": calling a fax again reaches nobody). Twilio's
status callback, POST /twilio/{tenant}/voice/campaign/status?message=<id> (signed),
reports the end: busy, no-answer, failed or canceled for a call nobody took, completed
(classified by its AnsweredBy, for a call whose answer webhook never got through).

Each is a report through router/lua/delivery_status.lua, as email and fax reports
are: the first final state wins, atomically with its DeliveryStatus event, so a
repeated or late report has no second effect; workers.campaigns.results counts it and
schedules a retry by the campaign's policy.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels._twilio_auth import tenant_form
from channels.voice import status
from channels.voice.campaign import agents
from channels.voice.campaign.dial import STATUS_PATH
from router import atomic, events
from router.appkeys import STORE
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.store import Store, text

log = logging.getLogger(__name__)

# Settled states (2) never change; a report can settle "sent", or an "unknown" the
# dispatcher recorded when Twilio's answer to the request was lost (the call existed).
RANK = {
    "sending": 0,
    "retry": 0,
    "sent": 1,
    "unknown": 1,
    "delivered": 2,
    "machine": 2,
    "refused": 2,
    "busy": 2,
    "no-answer": 2,
    "failed": 2,
    "canceled": 2,
}
NOT_ANSWERED = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call could not be connected",
    "canceled": "the call was canceled",
}


def answered(answered_by: str) -> tuple[str, str]:
    """The delivery state of an answered call from Twilio's AnsweredBy, and why.

    "unknown" (or no detection) is a person: AMD could not tell, and hanging up on
    a person is worse than talking to a machine."""
    if answered_by == "fax":
        return "refused", "a fax machine answered"
    if answered_by.startswith("machine"):
        return "machine", f"an answering machine answered ({answered_by})"
    return "delivered", ""


async def mark(
    store: Store, tenant: str, message: str, sid: str, state: str, error: str, answered_by: str = ""
) -> tuple[str, str]:
    """Record a campaign call's state: ("updated", state) or ("unchanged", current)."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        # The CallSid is the report's reference; the sender records it too, but an
        # answer may overtake that record.
        pipe.set(keys.provider_message(sid), message, ex=PROVIDER_ID_TTL_S)
        if answered_by:
            pipe.hset(keys.delivery(message), "answered_by", answered_by)
        await pipe.execute()
    return await atomic.delivery_status(store, tenant, ref=sid, channel="voice", status=state, error=error, order=RANK)


async def status_callback(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("CallSid", "CallStatus"))
    message = request.query.get("message", "")
    if not message:
        raise web.HTTPBadRequest(text="the message is required")
    sid, call_status = form["CallSid"], form["CallStatus"]
    keys = Keys(tenant.id)
    state, error = "", ""
    if call_status in NOT_ANSWERED:
        state, error = call_status, NOT_ANSWERED[call_status]
    elif call_status == "completed":
        stored = await store.redis.hget(keys.delivery(message), "answered_by")
        state, error = answered(form.get("AnsweredBy", "") or text(stored or b""))
    if state:
        if await store.redis.exists(keys.delivery(message)):
            outcome, current = await mark(store, tenant.id, message, sid, state, error)
            if call_status in NOT_ANSWERED:
                await _rang_out(store, tenant.id, message)
            log.info("campaign call %s of %s (%s): %s -> %s %s", sid, tenant.id, message, call_status, outcome, current)
        else:  # answered 200 all the same: Twilio retrying would not make it ours
            log.warning("status %s of campaign call %s: no message %s of %s", call_status, sid, message, tenant.id)
    # A callee who pressed 1 is a waiting caller like any other: hanging up while
    # queued is an abandon, which the voice status callback counts.
    if form.get("From") and form.get("To") and await store.redis.exists(keys.call(sid)):
        return await status.status_callback(request)
    return web.Response(text="")


async def _rang_out(store: Store, tenant: str, message_id: str) -> None:
    """An agent-paced campaign's dialler counts the call that nobody answered."""
    payload = await store.redis.hget(Keys(tenant).delivery(message_id), "payload")
    message = events.decode_outbound(payload) if payload else None
    if message is not None:
        await agents.rang_out(store, tenant, message)


def setup(app: web.Application) -> None:
    app.router.add_post(STATUS_PATH, status_callback)
