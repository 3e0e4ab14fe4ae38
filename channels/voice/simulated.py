"""Simulated calls: the softphone of a tenant without a Twilio account (the sandbox,
`contactrouter up`), so the desk's voice flow can be shown offline. It never pretends
to be Twilio: its ids start with SIM (no Twilio webhook accepts them), and the page
says "simulated call".

The calls ring where Twilio would ring an agent without a phone, through the same
desk flow: an accepted call (`on_accept`, from callbacks.offer_call, where Twilio
would call the agent's Client to be screened: it rings with the whisper, and the
agent's 1 bridges the caller's call, bridge.take), and the agent's leg of a callback or of a call the
agent places from the inbox (`place`, where VoiceSender would ask Twilio to call the
agent first). The server drives each call: ringing, then in-progress when the agent
answers, then completed, busy, no-answer or canceled; the record (Keys.call(sid), a
hash like a real call's) keeps when it was answered and ended, its duration and who
hung up. What follows a call's end is what a real call's reports set off: a call the
agent did not take, or hung up before pressing 1, goes back to its queue and the
agent is set away (as bridge.missed does); a caller who hangs up while it rings has abandoned; the
callback's outcome is decided by voice_callback.lua, as Twilio's reports on its legs
decide it.

Each change of a call is one simulated_call.lua call, so answering while the ring runs
out cannot both happen. The ring runs out (RING_S) when the agent's softphone or any
of their softphone requests next looks (`expire_due`): a simulation needs no timer.
"""

from __future__ import annotations

import hashlib
import logging

from channels.voice import bridge, inbound, recording, softphone, status
from router import agents, assign, atomic, conversations, events
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

PREFIX = "SIM"  # never Twilio's CA: waiting's CALL_SID refuses it in any webhook
RING_S = 30  # as long as the router lets an agent's phone ring (outbound.AGENT_RING_S)
LISTED = 5  # the newest calls an agent's softphone is shown
KEEP_MS = 24 * 3600 * 1000  # calls older than this leave the agent's list (their record stays its TTL)
NOT_TAKEN = frozenset({"busy", "no-answer"})
FIELDS = (
    "sid", "status", "kind", "direction", "conversation", "customer", "from", "to", "held", "muted", "digits",
    "started_at", "answered_at", "ended_at", "duration_s", "hung_up_by", "tenant", "whisper", "linked_state",
    "recording",
)  # fmt: skip


class NotYourCall(LookupError):
    """No simulated call of that id rings or runs on this agent's softphone."""


def sid_for(tenant: str, key: str) -> str:
    """One call per thing that rings (an accepted offer, a dial attempt): a repeat of it
    names the same call."""
    return PREFIX + hashlib.sha256(f"{tenant}:{key}".encode()).hexdigest()[:32]


def is_simulated(sid: str) -> bool:
    return sid.startswith(PREFIX)


async def ring(
    store: Store,
    tenant: Tenant,
    agent: str,
    *,
    key: str,
    kind: str,
    conversation: str,
    customer: str,
    message: str = "",
    attempt: int = 0,
    linked: str = "",
    whisper: str = "",
) -> str:
    """A call ringing on the agent's softphone; returns its id. Ringing it again (a
    retried accept or send) changes nothing of a call that already rang."""
    sid = sid_for(tenant.id, key)
    keys = Keys(tenant.id)
    now = events.now_ms()
    direction = "in" if kind == "call" else "out"
    async with store.redis.pipeline(transaction=True) as pipe:
        for name, value in (("status", "ringing"), ("started_at", now), ("ring_until", now + RING_S * 1000)):
            pipe.hsetnx(keys.call(sid), name, str(value))
        pipe.hset(
            keys.call(sid),
            mapping={
                "sid": sid,
                "tenant": tenant.id,
                "simulated": "1",
                "agent": agent,
                "kind": kind,
                "direction": direction,
                "conversation": conversation,
                "customer": customer,
                # as Twilio names a Client call's ends: the caller to the client, the
                # tenant's number to the client when the router places the call
                "from": customer if direction == "in" else (tenant.voice.numbers[:1] or [""])[0],
                "to": softphone.CLIENT + softphone.client_identity(agent),
                "message": message,
                "attempt": str(attempt),
                "linked": linked,  # the caller's own (IVR) call, when there is one
                "whisper": whisper,  # what the agent hears first: the queue, the customer, "press 1"
            },
        )
        pipe.expire(keys.call(sid), inbound.CALL_TTL_S)
        pipe.zadd(keys.softphone(agent), {sid: now}, nx=True)
        pipe.zremrangebyscore(keys.softphone(agent), 0, now - KEEP_MS)
        pipe.expire(keys.softphone(agent), inbound.CALL_TTL_S)
        await pipe.execute()
    log.info("simulated %s call %s rings agent %s of %s (%s)", kind, sid, agent, tenant.id, conversation)
    return sid


async def record(store: Store, tenant: str, sid: str) -> dict[str, str]:
    raw = await store.redis.hgetall(Keys(tenant).call(sid))
    return {text(k): text(v) for k, v in raw.items()}


async def calls_of(store: Store, tenant: str, agent: str) -> list[dict[str, str]]:
    """The agent's newest simulated calls, newest first, as the softphone shows them."""
    sids = [text(s) for s in await store.redis.zrevrange(Keys(tenant).softphone(agent), 0, LISTED - 1)]
    found = []
    for sid in sids:
        call = await record(store, tenant, sid)
        if call:
            if call.get("linked"):  # waiting for the agent's 1 (queued), or put through (connected)
                call["linked_state"] = (await inbound.get_call(store, tenant, call["linked"])).get("state", "")
                running = await recording.running(store, tenant, call.get("conversation", ""))
                call["recording"] = running["state"] if running else ""
            found.append({name: call.get(name, "") for name in FIELDS})
    return found


async def act(
    store: Store, tenant: Tenant, agent: str, sid: str, action: str, *, by: str = "agent", value: str = ""
) -> str:
    """The agent (or, with by="customer", the simulated customer) does something to a
    call on the agent's softphone; returns its status after. What a change sets off
    follows it once, from whoever made the change."""
    call = await record(store, tenant.id, sid)
    if not is_simulated(sid) or call.get("agent") != agent:
        raise NotYourCall(sid)
    outcome, after = await atomic.simulated_call(store, tenant.id, sid=sid, action=action, by=by, value=value)
    if outcome == "changed":
        call["status"] = after
        await _follow(store, tenant, call, action, by, value)
    return after


async def expire_due(store: Store, tenant: Tenant, agent: str) -> None:
    """Calls that rang out without an answer become no-answer (and what follows, follows)."""
    now = events.now_ms()
    for call in await calls_of(store, tenant.id, agent):
        if call["status"] == "ringing":
            ring_until = await store.redis.hget(Keys(tenant.id).call(call["sid"]), "ring_until")
            if ring_until is not None and int(ring_until) <= now:
                await act(store, tenant, agent, call["sid"], "expire", by="")


async def _follow(store: Store, tenant: Tenant, call: dict[str, str], action: str, by: str, value: str) -> None:
    if call.get("kind") == "call":
        await _follow_incoming(store, tenant, call, action, by, value)
    else:
        await _follow_placed(store, tenant, call, action)


async def _follow_incoming(
    store: Store, tenant: Tenant, call: dict[str, str], action: str, by: str, value: str
) -> None:
    """As Twilio's reports on the agent's leg and the caller's call decide it
    (channels.voice.bridge, status): the agent's 1 after the whisper bridges the
    caller's call; not taken, or hung up before pressing 1, back to the queue; hung up
    by the caller while ringing, abandoned; over, the caller's call is over too."""
    agent, conversation, after = call["agent"], call["conversation"], call["status"]
    linked = await inbound.get_call(store, tenant.id, call["linked"]) if call.get("linked") else {}
    waiting = linked.get("state") == "queued"  # not taken at the whisper yet
    if action == "digits" and waiting and value.startswith(bridge.TAKE):
        if await bridge.take(store, tenant, conversation, call["linked"], agent, call["sid"]):
            queue = (await conversations.get(store, tenant.id, conversation)).get("queue", "")
            if recording.applies(tenant, queue, placed=False):  # a marker: the sandbox records no sound
                await recording.start(store, None, "", tenant, conversation, call["linked"])
    elif after == "completed" and by == "agent" and waiting:
        reservation = (await conversations.get(store, tenant.id, conversation)).get("reservation", "")
        await bridge.missed(store, tenant, agent, conversation, call["linked"], reservation, "not taken at the whisper")
    elif after in NOT_TAKEN:
        record_ = await conversations.get(store, tenant.id, conversation)
        if record_.get("state") == "assigned" and record_.get("agent") == agent:
            log.info("agent %s of %s did not take simulated call %s (%s): back to the queue", agent, tenant.id,
                     call["sid"], after)  # fmt: skip
            await agents.transfer(
                store, tenant, agent, conversation, to_queue=record_["queue"], note=f"agent softphone {after}"
            )
            await agents.set_presence(store, tenant, agent, "away", "missed call")
    elif after == "canceled":
        if linked:  # counted on the caller's own call, once, as its status report would
            linked.setdefault("conversation", conversation)
            await status.abandoned(store, tenant.id, call["linked"], linked, agent=agent, wait=False)
        else:
            _outcome, freed = await atomic.close(store, tenant.id, conversation, by=agent, disposition="abandoned")
            if freed:
                await assign.assign_agent(store, tenant.id, freed)
    elif after == "completed" and by != "transfer" and linked:
        await recording.stop_simulated(store, tenant.id, conversation)
        ended = await record(store, tenant.id, call["sid"])
        await inbound.update_call(
            store,
            tenant.id,
            call["linked"],
            status="completed",
            ended_at=ended.get("ended_at", ""),
            duration_s=ended.get("duration_s", "0"),
            hung_up_by=ended.get("hung_up_by", ""),
            state="closed",
        )


async def _follow_placed(store: Store, tenant: Tenant, call: dict[str, str], action: str) -> None:
    """A callback or a call the agent placed: the agent answering puts the simulated
    customer through at once (connected); the agent not taking it counts as a dial not
    made, which voice_callback.lua retries or gives up on, as it does Twilio's reports."""
    after = call["status"]
    if action == "answer":
        leg, reported = "customer", "in-progress"
    elif after in NOT_TAKEN:
        leg, reported = "agent", after
    else:
        return
    dials = 1 if call["kind"] == softphone.DIAL else tenant.voice.callback.attempts
    outcome, current = await atomic.voice_callback(
        store,
        tenant.id,
        message_id=call["message"],
        attempt=call["attempt"],
        leg=leg,
        status=reported,
        sid=call["sid"],
        dials_allowed=dials,
        spacing_ms=int(tenant.voice.callback.spacing_s * 1000),
    )
    log.info("simulated %s %s of %s: %s leg %s -> %s %s", call["kind"], call["message"], tenant.id, leg, reported,
             outcome, current)  # fmt: skip


async def on_accept(store: Store, tenant: Tenant, agent: str, reservation: str) -> str | None:
    """After an accepted call (agents.ON_ACCEPT["call"]): ring the agent's simulated
    softphone, where Twilio would ring their Client; None where a real phone or
    Twilio's SDK rings instead. A repeated accept rings the same call."""
    if softphone.mode(tenant) != "simulated" or softphone.phone_of(tenant, agent):
        return None
    conversation = assign.conversation_of(reservation)
    record_ = await conversations.get(store, tenant.id, conversation)
    linked = await inbound.latest_call(store, tenant.id, conversation)
    return await ring(
        store,
        tenant,
        agent,
        key=f"accept:{reservation}",
        kind="call",
        conversation=conversation,
        customer=record_.get("last_address") or record_.get("address", ""),
        linked=linked,
        whisper=await bridge.whisper(store, tenant, record_) if linked else "",
    )


async def place(store: Store, tenant: Tenant, message: events.OutboundMessage, attempt: int) -> str:
    """The agent's leg of a callback or of the agent's own call, rung on their simulated
    softphone (VoiceSender, for a tenant without Twilio and an agent without a phone)."""
    return await ring(
        store,
        tenant,
        message.metadata.get("agent", ""),
        key=f"{message.id}:{attempt}",
        kind=message.metadata.get("action", ""),
        conversation=message.conversation,
        customer=message.to,
        message=message.id,
        attempt=attempt,
    )
