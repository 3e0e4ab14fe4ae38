"""The agents' side of the core: presence, offers, and what they do with a conversation.

The web inbox and the CLI call these; each action is one atomic script, then
any capacity it freed is offered again at once.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Awaitable, Callable
from typing import Literal
from zoneinfo import ZoneInfo

from router import assign, atomic, conversations, events, surveys
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store, text

Presence = Literal["available", "busy", "away", "offline"]
PRESENCES = ("available", "busy", "away", "offline")

AcceptHook = Callable[[Store, Tenant, str, str], Awaitable[object]]
ON_ACCEPT: dict[str, AcceptHook] = {}
"""What follows an accepted offer, by the conversation's kind, as (store, tenant, agent,
reservation): a channel registers its own when its package is imported (the voice
channel dials a callback), so the core never imports a channel."""


class AgentError(ContactRouterError, ValueError):
    """An action the agent cannot take (not theirs, unknown, wrong state)."""


def _known(tenant: Tenant, agent: str) -> None:
    if agent not in {a.id for a in tenant.agents}:
        raise AgentError(f"no agent {agent!r} in tenant {tenant.id!r}")


async def set_presence(store: Store, tenant: Tenant, agent: str, presence: str, reason: str = "") -> str:
    """Change presence; an agent who becomes available is offered waiting work at once."""
    _known(tenant, agent)
    if presence not in PRESENCES:
        raise AgentError(f"presence must be one of {', '.join(PRESENCES)}")
    before = await atomic.presence(store, tenant.id, agent, presence=presence, reason=reason)
    if presence == "available":
        await assign.assign_agent(store, tenant.id, agent)
    elif presence in ("away", "offline"):
        # Whoever steps away hands back their pending offers now, rather than
        # making those customers wait out the reservation timeout.
        for offer in await offers(store, tenant, agent):
            await assign.respond(store, tenant.id, offer["reservation"], "reject", agent, tenant.max_missed_offers)
    return before


async def status(store: Store, tenant: Tenant, agent: str) -> dict[str, str]:
    _known(tenant, agent)
    record = await store.redis.hgetall(Keys(tenant.id).agent(agent))
    return {k.decode(): v.decode() for k, v in record.items()}


async def offers(store: Store, tenant: Tenant, agent: str) -> list[dict[str, str]]:
    """The agent's pending reservations (offers), the first to expire first.

    A pending offer is its conversation's record (state reserved, agent, reservation)
    and its timer, whose score is when it expires (lib.lua's offer)."""
    _known(tenant, agent)
    keys = Keys(tenant.id)
    result = []
    for conv in await store.redis.smembers(keys.agent_work(agent)):
        record = await conversations.get(store, tenant.id, conv.decode())
        if record.get("state") == "reserved" and record.get("agent") == agent:
            expires = await store.redis.zscore(keys.timers, f"res:{record['reservation']}")
            offer = {"reservation": record["reservation"], "conv": record["id"], "state": "pending"}
            offer |= {"queue": record.get("queue", ""), "channel": record.get("channel", "")}
            result.append(offer | {"agent": agent, "expires_at": str(int(expires or 0))})
    return sorted(result, key=lambda r: int(r["expires_at"]))


async def work(store: Store, tenant: Tenant, agent: str) -> list[dict[str, str]]:
    """Every conversation holding one of the agent's slots (offered, assigned, in wrap-up)."""
    _known(tenant, agent)
    keys = Keys(tenant.id)
    return [
        await conversations.get(store, tenant.id, c.decode())
        for c in await store.redis.smembers(keys.agent_work(agent))
    ]


async def _respond(store: Store, tenant: Tenant, agent: str, reservation: str, action: str) -> str:
    """Returns the conversation's kind."""
    _known(tenant, agent)
    state, _queue, _holder, kind = await assign.respond(
        store, tenant.id, reservation, action, agent, tenant.max_missed_offers
    )
    expected = {"accept": "accepted", "reject": "rejected"}[action]
    if state != expected:
        raise AgentError(f"reservation {reservation} is {state.replace('_', ' ')}")
    return kind


async def accept(store: Store, tenant: Tenant, agent: str, reservation: str) -> None:
    kind = await _respond(store, tenant, agent, reservation, "accept")
    # A repeated accept of the same offer gets here again and runs the hook again, which
    # must have no second effect (it completes one cut short). Kinds without a hook, the
    # usual case, cost no reads.
    hook = ON_ACCEPT.get(kind)
    if hook is not None:
        await hook(store, tenant, agent, reservation)


async def reject(store: Store, tenant: Tenant, agent: str, reservation: str) -> None:
    await _respond(store, tenant, agent, reservation, "reject")


async def _held(store: Store, tenant: Tenant, agent: str, conversation: str) -> dict[str, str]:
    _known(tenant, agent)
    record = await conversations.get(store, tenant.id, conversation)
    if record.get("agent") != agent or record.get("state") != "assigned":
        raise AgentError(f"conversation {conversation} is not assigned to {agent}")
    return record


async def reply(
    store: Store,
    tenant: Tenant,
    agent: str,
    conversation: str,
    body: str,
    *,
    channel: str | None = None,
    address: str | None = None,
    subject: str = "",
    idempotency_key: str = "",
    attachments: tuple[events.Attachment, ...] = (),
    cc: tuple[str, ...] = (),
) -> events.OutboundMessage:
    """Send a reply in a conversation the agent holds: to where its customer last wrote
    unless the agent chooses another of their addresses or someone else in it, and (email)
    copied to others in it only when the agent asks (conversations.send_reply)."""
    await _held(store, tenant, agent, conversation)
    return await conversations.send_reply(
        store,
        tenant.id,
        conversation,
        agent,
        body,
        channel=channel,
        address=address,
        subject=subject,
        idempotency_key=idempotency_key,
        attachments=attachments,
        cc=cc,
    )


async def note(store: Store, tenant: Tenant, agent: str, conversation: str, text: str) -> None:
    await _held(store, tenant, agent, conversation)
    await conversations.add_note(store, tenant.id, conversation, agent, text)


async def transfer(
    store: Store,
    tenant: Tenant,
    agent: str,
    conversation: str,
    *,
    to_agent: str = "",
    to_queue: str = "",
    note: str = "",
) -> str:
    """Hand a conversation to a colleague (offered to them) or a queue (keeps its age)."""
    if bool(to_agent) == bool(to_queue):
        raise AgentError("transfer to exactly one of an agent or a queue")
    record = await _held(store, tenant, agent, conversation)
    outcome = await _move(store, tenant, conversation, record, agent, to_agent, to_queue, note, "Transfer note")
    if outcome not in ("offered", "queued"):
        raise AgentError(f"cannot transfer: {outcome.replace('_', ' ')}")
    return outcome


async def reassign(
    store: Store, tenant: Tenant, conversation: str, *, by: str, to_agent: str = "", to_queue: str = "", note: str = ""
) -> str:
    """A supervisor moves an assigned conversation, whoever holds it, to an agent or a queue.
    Returns the outcome: offered, queued, or why not (the transfer script's word)."""
    if bool(to_agent) == bool(to_queue):
        raise AgentError("reassign to exactly one of an agent or a queue")
    record = await conversations.get(store, tenant.id, conversation)
    return await _move(store, tenant, conversation, record, "", to_agent, to_queue, note, "Supervisor note", by)


async def _move(
    store: Store,
    tenant: Tenant,
    conversation: str,
    record: dict[str, str],
    holder: str,
    to_agent: str,
    to_queue: str,
    note: str,
    note_label: str,
    author: str = "",
) -> str:
    """The transfer script (holder "" means whoever holds it), then the note that travels with
    the conversation and new work offered to whatever capacity the move freed."""
    queue = tenant.queue(record["queue"])
    timeout = queue.reservation_timeout if queue.reservation_timeout is not None else tenant.reservation_timeout
    outcome, target = await atomic.transfer(
        store,
        tenant.id,
        conversation,
        by=holder,
        to_agent=to_agent,
        to_queue=to_queue,
        note=note,
        timeout_ms=int(timeout * 1000),
    )
    if outcome == "not_assigned":
        # The script ran, its answer was lost and the client sent it again: the repeat
        # finds the conversation moved and answers "not_assigned". If it is with the
        # requested target, the transfer is done; what follows it is not, yet.
        moved = await _moved(store, tenant, conversation, to_agent, to_queue)
        outcome, target = (moved, to_queue) if moved else (outcome, target)
    if outcome not in ("offered", "queued"):
        return outcome
    if note:  # the colleague reads it in the conversation's history
        await conversations.add_note(store, tenant.id, conversation, author or holder, f"{note_label}: {note}")
    if outcome == "queued":
        await assign.assign_queue(store, tenant.id, text(target))
    if record.get("agent"):
        await assign.assign_agent(store, tenant.id, record["agent"])
    return outcome


async def _moved(store: Store, tenant: Tenant, conversation: str, to_agent: str, to_queue: str) -> str:
    """The transfer's outcome if the conversation is with its target (offered to the
    agent, or waiting in the queue): "offered" or "queued"; else ""."""
    record = await conversations.get(store, tenant.id, conversation)
    state = record.get("state")
    if to_agent:
        return "offered" if state in ("reserved", "assigned") and record.get("agent") == to_agent else ""
    return "queued" if state == "queued" and record.get("queue") == to_queue else ""


PROMISE = "promise_to_pay"  # the disposition that carries terms: an amount and a date


def promise_terms(amount: str, due: str, today: dt.date) -> dict[str, str]:
    """A promise to pay's amount (more than 0, cents at most) and date (today or later),
    checked here so that campaign results and reports can add them up."""
    try:
        value = decimal.Decimal(amount.strip().replace(",", ""))
    except decimal.InvalidOperation:
        raise AgentError("a promise to pay needs the amount, e.g. 120.50") from None
    if not value.is_finite() or value <= 0 or value.as_tuple().exponent < -2 or value >= 10**9:
        raise AgentError("a promise to pay needs an amount above 0 with at most two decimals")
    try:
        when = dt.date.fromisoformat(due.strip())
    except ValueError:
        raise AgentError("a promise to pay needs the date it is due, as YYYY-MM-DD") from None
    if when < today:
        raise AgentError(f"a promise to pay cannot be due in the past ({when.isoformat()})")
    return {"promise_amount": f"{value:.2f}", "promise_date": when.isoformat()}


async def close(
    store: Store,
    tenant: Tenant,
    agent: str,
    conversation: str,
    disposition: str,
    *,
    promise_amount: str = "",
    promise_date: str = "",
) -> None:
    """Close with a disposition; the agent's slot is freed after the queue's wrap-up time.
    A promise to pay needs its amount and date, kept on the conversation."""
    if disposition not in tenant.dispositions:
        raise AgentError(f"disposition must be one of {', '.join(tenant.dispositions)}")
    record = await _held(store, tenant, agent, conversation)
    if disposition == PROMISE:
        today = dt.datetime.now(ZoneInfo(tenant.timezone)).date()
        terms = promise_terms(promise_amount, promise_date, today)
        # written before the close, so whoever follows the Closed event finds them
        await store.redis.hset(Keys(tenant.id).conversation(conversation), mapping=terms)
    queue = tenant.queue(record["queue"])
    wrapup = queue.wrapup_seconds if queue.wrapup_seconds is not None else tenant.wrapup_seconds
    state, freed = await atomic.close(
        store,
        tenant.id,
        conversation,
        by=agent,
        disposition=disposition,
        wrapup_ms=int(wrapup * 1000),
        survey_due=surveys.due_at(tenant, record, disposition, events.now_ms()),  # its timer, set with the close
    )
    if text(state) != "closed":
        # The store's client sends a script again when its answer was lost; the repeat
        # finds the conversation closed and says so. Closed by this agent with this
        # disposition is this close, done: not a failure to show the agent.
        after = await conversations.get(store, tenant.id, conversation)
        if (after.get("state"), after.get("agent"), after.get("disposition")) != ("closed", agent, disposition):
            raise AgentError(f"cannot close: {text(state).replace('_', ' ')}")
        freed = agent if wrapup <= 0 else ""  # the first run gave the slot back only without wrap-up
    if text(freed):
        await assign.assign_agent(store, tenant.id, agent)


async def end_wrapup(store: Store, tenant: Tenant, agent: str, conversation: str) -> bool:
    """The agent is done with wrap-up before its timer; their slot is free now."""
    _known(tenant, agent)
    freed = await atomic.wrapup(store, tenant.id, agent=agent, conversation=conversation)
    if freed:
        await assign.assign_agent(store, tenant.id, agent)
    return bool(freed)
