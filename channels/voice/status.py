"""Call status callbacks: Twilio reports a call's progress (initiated, ringing,
in-progress, then completed, busy, failed, no-answer or canceled).

POST /twilio/voice/status, signed like every voice webhook; the tenant owns the
number called (or, for a call we placed, the number it came from). Each report
updates the call's record; a repeated report (same CallSid and status) changes
nothing. A caller who hangs up while their conversation still waits (queued, or
offered to an agent who has not taken it) abandoned it: the conversation is
closed "abandoned" (the offered agent freed at once, and so is an agent whose leg was
being screened) and one Abandoned event, with the queue and the time waited since
queue entry (the IVR's time apart), goes to the tenant's events stream. A bridged
call's end gives its queue one measured talk time (estimate.record_handled).

A hang-up reported before routing has opened the call's conversation (routing
lags more than the bounded wait) is not lost: the call's record gets
abandon_pending and the call joins the tenant's pending set, which every status
report and every round of the wait loop (resolve_pending) looks at again; once
routing has opened the conversation it is closed "abandoned" and counted, once,
so nobody is left offered a call with no caller on the line.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from redis.exceptions import WatchError

from channels.voice import estimate, inbound, survey
from channels.voice._webhook import call_form
from router import assign, atomic, conversations, events
from router.appkeys import STORE
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.store import Store, text

log = logging.getLogger(__name__)

ROUTING_WAIT_S = 0.1
ROUTING_WAIT_ROUNDS = 50  # up to 5 s: Twilio's status callbacks do not hold up the call
PENDING_BATCH = 20  # pending abandons looked at per resolve_pending
PENDING_MAX_MS = 24 * 3600 * 1000  # a contact routing never opened (dead-lettered) is given up on

PATH = "/twilio/voice/status"
STATUSES = (
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "answered",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
ENDED = ("completed", "busy", "failed", "no-answer", "canceled")


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, status_callback)


async def status_callback(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await call_form(request, ("CallStatus",), placed_by_us=True)
    sid, status = form["CallSid"], form["CallStatus"]
    if status not in STATUSES:
        raise web.HTTPBadRequest(text=f"unknown CallStatus {status!r}")
    await resolve_pending(store, tenant.id)  # any report, even a repeated one, looks at them again
    keys = Keys(tenant.id)
    seen = keys.seen("voice-status", f"{sid}:{status}")
    if await store.redis.exists(seen):
        return web.Response(text="")
    call = await inbound.get_call(store, tenant.id, sid)
    if not call:
        # A call we know nothing of (a leg another module placed): answered 200, as
        # Twilio retrying would not make it ours.
        log.info("status %s for unknown call %s of %s ignored", status, sid, tenant.id)
        return web.Response(text="")
    fields = {"status": status, "status_at": str(events.now_ms())}
    if status in ENDED:
        fields["ended_at"] = fields["status_at"]
        if form.get("CallDuration"):
            fields["duration_s"] = form["CallDuration"]
    await inbound.update_call(store, tenant.id, sid, **fields)
    if status in ENDED and call.get("state") == "queued":
        # hung up while waiting, or while the agent who took the call was being
        # screened (bridge): that agent is freed, not blamed
        await abandoned(store, tenant.id, sid, call, agent=await _screening_agent(store, tenant.id, sid, call))
    elif status in ENDED and call.get("state") in ("connected", survey.STATE) and call.get("bridged_at"):
        # the talk ended when the agent hung up, not after the keypad survey (channels.voice.survey)
        talk_ms = int(call.get("survey_at") or fields["ended_at"]) - int(call["bridged_at"])
        await estimate.record_handled(store, tenant.id, call.get("queue", ""), talk_ms)
    # Marked only once the effect is stored: a failure above is redone on a retry.
    await store.redis.set(seen, "1", ex=PROVIDER_ID_TTL_S)
    return web.Response(text="")


async def _screening_agent(store: Store, tenant: str, sid: str, call: dict[str, str]) -> str:
    """The agent who took the waiting call and has not been bridged to it yet, or ""."""
    conversation = await inbound.conversation_of(store, tenant, sid, call)
    if conversation is None:
        return ""
    record = await conversations.get(store, tenant, conversation)
    return record.get("agent", "") if record.get("state") == "assigned" else ""


def pending_key(tenant: str) -> str:
    return Keys(tenant).abandons_pending


async def resolve_pending(store: Store, tenant: str) -> int:
    """Count the pending abandons whose conversation routing has opened meanwhile;
    returns how many were counted. Never fails its caller (a webhook of another call)."""
    key = pending_key(tenant)
    counted = 0
    try:
        await store.redis.zremrangebyscore(key, 0, events.now_ms() - PENDING_MAX_MS)
        for raw in await store.redis.zrange(key, 0, PENDING_BATCH - 1):
            sid = text(raw)
            call = await inbound.get_call(store, tenant, sid)
            if not call.get("abandon_pending"):  # counted, or the record expired
                await store.redis.zrem(key, sid)
                continue
            if await inbound.conversation_of(store, tenant, sid, call) is not None:
                counted += await abandoned(store, tenant, sid, call, wait=False)
    except Exception:
        log.exception("pending abandons of %s not resolved; the next report tries again", tenant)
    return counted


async def abandoned(
    store: Store, tenant: str, sid: str, call: dict[str, str], *, agent: str = "", wait: bool = True
) -> bool:
    """The caller hung up while waiting: close the conversation, count one abandon.

    Returns whether this report counted it. The count is flagged on the call's
    record in the same transaction that appends the event, so a repeated or
    racing report never counts it twice, and a report redone after a failure
    between the close and the count still counts it once. With agent, the
    conversation that agent took is closed too (the caller hung up while the
    agent's phone rang); without, only one nobody has taken yet. With no
    conversation yet (after a bounded wait, unless not wait) the call is left
    abandon_pending for resolve_pending.
    """
    keys = Keys(tenant)
    conversation = await inbound.conversation_of(store, tenant, sid, call)
    for _ in range(ROUTING_WAIT_ROUNDS if wait else 0):
        # Hung up within moments of entering the queue: routing (asynchronous, from
        # the inbound stream) opens the conversation in milliseconds; wait for it
        # so nobody is offered a call with no caller on the line.
        if conversation is not None:
            break
        await asyncio.sleep(ROUTING_WAIT_S)
        conversation = await inbound.conversation_of(store, tenant, sid, call)
    if conversation is None:
        log.warning("call %s of %s ended before routing opened its conversation: abandon pending", sid, tenant)
        now = events.now_ms()
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.call(sid), mapping={"abandon_pending": str(now), "state": "abandoned"})
            pipe.zadd(pending_key(tenant), {sid: now}, nx=True)
            await pipe.execute()
        return False
    if agent:
        _outcome, freed = await atomic.close(store, tenant, conversation, by=agent, disposition="abandoned")
        if freed:
            await assign.assign_agent(store, tenant, freed)
    else:
        await conversations.close_unanswered(store, tenant, conversation, "abandoned")
    record = await conversations.get(store, tenant, conversation)
    if record.get("state") != "closed" or record.get("disposition") != "abandoned":
        # an agent took it just before the caller hung up
        await _settled(store, tenant, sid)
        return False
    # from queue entry: the IVR's time before it is not waiting (inbound.enter_queue)
    started = int(call.get("queued_at") or call.get("started_at") or events.now_ms())
    event = events.Abandoned(
        tenant=tenant,
        occurred_at=events.now_ms(),
        channel="voice",
        direction="in",
        provider_id=sid,
        conversation=conversation,
        queue=record.get("queue", call.get("queue", "")),
        waited_ms=max(0, events.now_ms() - started),
    )
    while True:
        async with store.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.call(sid))
                if await pipe.hget(keys.call(sid), "abandoned_at"):
                    await pipe.reset()
                    await _settled(store, tenant, sid)
                    return False
                pipe.multi()
                pipe.hset(keys.call(sid), mapping={"abandoned_at": str(event.occurred_at), "state": "abandoned"})
                pipe.hdel(keys.call(sid), "abandon_pending")
                pipe.zrem(pending_key(tenant), sid)
                pipe.xadd(keys.events, {"e": events.encode(event)})
                await pipe.execute()
                return True
            except WatchError:
                # a concurrent report counted it, or the connection dropped while
                # watching and nothing was written: the check above tells which
                continue


async def _settled(store: Store, tenant: str, sid: str) -> None:
    """No abandon is pending for the call any more."""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hdel(Keys(tenant).call(sid), "abandon_pending")
        pipe.zrem(pending_key(tenant), sid)
        await pipe.execute()
