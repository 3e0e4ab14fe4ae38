"""One typed call per routing script (router/lua/*.lua): each script's arguments in the
order its header reads them, written once here, behind named parameters.

Every script is one atomic decision on one shard (router/scripts.py loads them). The
calls made in batches return a router.scripts.Call for router.scripts.run_pipelined;
the others run the script and return its answer as text and numbers. The campaigns'
scripts (router/lua/campaigns) have theirs in workers/campaigns/scripts.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from router import scripts
from router.keys import Keys
from router.store import Store, text

# routing


class IntakeArgs(NamedTuple):
    """intake.lua's arguments for one contact (tests/router/test_scripts.py holds these
    names to the `local name = ARGV[at + n]` lines of its header)."""

    contact: str  # the contact's id: a conversation or customer it opens takes it
    ident: str  # the address as an identity
    channel: str
    queue: str  # the queue a new conversation enters
    priority: int
    enqueued_at: int  # ms: its original time, for a contact that comes back
    entry: bytes  # its history entry (MessagePack)
    provider_id: str
    address: str
    refs: str  # the email Message-IDs it answers, one a line
    own_ref: str  # its own Message-ID (email), or ""
    tenant_address: str  # the tenant's number or address the customer wrote to
    kind: str  # message | call | callback | voicemail
    name: str  # the name the channel gives the customer (pre-chat, email display name), or ""
    language: str  # the customer's language (given or detected), or "": a new conversation keeps it
    entry_id: str  # its inbound stream entry (the last: intake.lua reads the batch's ids by it)


class IntakeBatch(NamedTuple):
    """intake.lua's first arguments, for the whole batch; each contact's IntakeArgs follow."""

    count: int
    group: str  # the consumer group and consumer that read the batch's entries
    consumer: str
    lookahead: int  # how many waiting conversations an offer round looks at
    lowest: str  # the lowest and highest of the entries' ids
    highest: str


def intake_call(store: Store, tenant: str, batch: IntakeBatch, contacts: Iterable[IntakeArgs]) -> scripts.Call:
    """One intake.lua call for contacts of one shard; its reply is {results, rounds}."""
    return scripts.Call(store.scripts.intake, Keys(tenant).base, [*batch, *(a for args in contacts for a in args)])


async def assign_queue(store: Store, tenant: str, *, queue: str, lookahead: int) -> list[str]:
    """assign_queue.lua: an offer round on a queue; the agents offered."""
    made = await store.scripts.assign_queue(keys=[Keys(tenant).base], args=[queue, lookahead])
    return [text(agent) for agent in made]


async def assign_agent(store: Store, tenant: str, *, agent: str, lookahead: int) -> int:
    """assign_agent.lua: offers to an agent with free capacity; how many were made."""
    return int(await store.scripts.assign_agent(keys=[Keys(tenant).base], args=[agent, lookahead]))


async def respond(
    store: Store, tenant: str, *, reservation: str, action: str, by: str, max_missed: int
) -> tuple[str, str, str, str]:
    """respond.lua: accept, reject or time out ("" for `by`: the timer) an offer;
    (state, queue, agent, the conversation's kind)."""
    reply = await store.scripts.respond(keys=[Keys(tenant).base], args=[reservation, action, by, max_missed])
    state, queue, agent, kind = (text(value) for value in reply)
    return state, queue, agent, kind


async def presence(store: Store, tenant: str, agent: str, *, presence: str, reason: str = "") -> str:
    """presence.lua: set an agent's presence ("" keeps it and recomputes readiness);
    the presence before, or "unknown"."""
    return text(await store.scripts.presence(keys=[Keys(tenant).base], args=[agent, presence, reason]))


def presence_call(store: Store, tenant: str, agent: str, *, presence: str, reason: str = "") -> scripts.Call:
    """presence.lua as a call to run pipelined with others."""
    return scripts.Call(store.scripts.presence, Keys(tenant).base, [agent, presence, reason])


async def close(
    store: Store,
    tenant: str,
    conversation: str,
    *,
    by: str = "",
    disposition: str,
    wrapup_ms: int = 0,
    only_unanswered: bool = False,
    survey_due: str = "",
) -> tuple[str, str]:
    """close.lua: close a conversation (`by` an agent, or "" for a supervisor or the
    system; only_unanswered: unless an agent has taken it; survey_due: when its survey's
    timer comes due, ms, or ""); (outcome, the agent whose slot was given back or "")."""
    args = [conversation, by, disposition, wrapup_ms, "unanswered" if only_unanswered else "", survey_due]
    outcome, freed = await store.scripts.close(keys=[Keys(tenant).base], args=args)
    return text(outcome), text(freed)


async def wrapup(store: Store, tenant: str, *, agent: str, conversation: str) -> bool:
    """wrapup.lua: end an agent's wrap-up of a conversation; True if their slot came back."""
    return bool(int(await store.scripts.wrapup(keys=[Keys(tenant).base], args=[agent, conversation])))


async def transfer(
    store: Store, tenant: str, conversation: str, *, by: str, to_agent: str, to_queue: str, note: str, timeout_ms: int
) -> tuple[str, str]:
    """transfer.lua: hand an assigned conversation (held by `by`, or "" for whoever holds
    it) to an agent or a queue; (outcome, the queue)."""
    outcome, target = await store.scripts.transfer(
        keys=[Keys(tenant).base], args=[conversation, by, to_agent, to_queue, note, timeout_ms]
    )
    return text(outcome), text(target)


# timers


async def claim_timers(store: Store, tenant: str, *, lease_ms: int, limit: int) -> list[str]:
    """claim_timers.lua: the due timers, each leased for `lease_ms`."""
    due = await store.scripts.claim_timers(keys=[Keys(tenant).base], args=[lease_ms, limit])
    return [text(member) for member in due]


async def escalate(store: Store, tenant: str, conversation: str, *, step: int) -> tuple[str, str]:
    """escalate.lua: apply escalation step `step` (0-based); (action or "skipped", queue)."""
    action, target = await store.scripts.escalate(keys=[Keys(tenant).base], args=[conversation, step])
    return text(action), text(target)


async def sla(store: Store, tenant: str, conversation: str) -> tuple[str, str]:
    """sla.lua: the service-level check comes due; (met | breached, the queue it moved to or "")."""
    outcome, target = await store.scripts.sla(keys=[Keys(tenant).base], args=[conversation])
    return text(outcome), text(target)


# streams


async def ingest(store: Store, *, seen: str, stream: str, payload: bytes, ttl_s: int) -> tuple[bool, str]:
    """ingest.lua: append `payload` to `stream` unless the marker `seen` exists; (added,
    the entry's id, or the first one's). EVALSHA sent straight through (scripts.call)."""
    added, entry_id = await scripts.call(store.redis, store.scripts.ingest, [seen, stream], [payload, ttl_s])
    return bool(added), text(entry_id)


async def dead_letter(
    store: Store, *, stream: str, dead: str, group: str, entry_id: str, fields: Mapping[str, str | int | bytes]
) -> str:
    """dead_letter.lua: acknowledge an entry and copy it, with `fields`, to `dead`, if it
    was still pending; the copy's id, or ""."""
    moved = await store.scripts.dead_letter(
        keys=[stream, dead], args=[group, entry_id, *(part for pair in fields.items() for part in pair)]
    )
    return text(moved)


# conversations


async def record_once(
    store: Store,
    tenant: str,
    conversation: str,
    *,
    seen: str,
    value: bytes,
    ttl_s: int,
    entry: bytes,
    reply_at: str = "",
    outbound: bytes = b"",
    added: bytes = b"",
) -> tuple[bool, bytes]:
    """record_once.lua: add `entry` to a conversation's history (and, given `reply_at`,
    queue the reply) unless the marker `seen` exists; (wrote, the marker's value)."""
    keys = Keys(tenant)
    wrote, first = await store.scripts.record_once(
        keys=[
            keys.base,
            seen,
            keys.conversation_log(conversation),
            keys.conversation(conversation),
            keys.outbound,
            keys.events,
        ],
        args=[value, ttl_s, entry, reply_at, outbound, added],
    )
    return bool(int(wrote)), first


# delivery


def begin_send_call(store: Store, tenant: str, *, message_id: str, payload: bytes, lease_ms: int) -> scripts.Call:
    """begin_send.lua: take a send's lease; its reply is (go | in_flight | stale |
    scheduled | a final status, attempt)."""
    return scripts.Call(store.scripts.begin_send, Keys(tenant).base, [message_id, payload, lease_ms])


def finish_send_call(
    store: Store,
    tenant: str,
    *,
    message_id: str,
    attempt: int,
    status: str,
    provider_id: str,
    error: str,
    retry_at_ms: int,
    event: bytes,
) -> scripts.Call:
    """finish_send.lua: record an attempt's outcome if it is still the current one
    (retry_at_ms: 0 for no retry); its reply is 1 if recorded."""
    args = [message_id, attempt, status, provider_id, error, retry_at_ms, event]
    return scripts.Call(store.scripts.finish_send, Keys(tenant).base, args)


async def mark_requested(store: Store, tenant: str, message_id: str, **fields: str) -> int:
    """mark_requested.lua: note that the current attempt is about to call its provider
    (recording `fields` beside it); the attempt."""
    pairs = [item for pair in fields.items() for item in pair]
    return int(await store.scripts.mark_requested(keys=[Keys(tenant).base], args=[message_id, *pairs]))


async def delivery_status(
    store: Store, tenant: str, *, ref: str, channel: str, status: str, error: str, order: Mapping[str, int]
) -> tuple[str, str]:
    """delivery_status.lua: a provider's report on the message we sent as `ref`, applied
    if it moves the status forward in `order`; (updated | unchanged | unknown, status)."""
    ranks = [str(item) for pair in order.items() for item in pair]
    outcome, current = await store.scripts.delivery_status(
        keys=[Keys(tenant).base], args=[ref, channel, status, error, *ranks]
    )
    return text(outcome), text(current)


async def voice_callback(
    store: Store,
    tenant: str,
    *,
    message_id: str,
    attempt: str,
    leg: str,
    status: str,
    sid: str,
    dials_allowed: int,
    spacing_ms: int,
) -> tuple[str, str]:
    """voice_callback.lua: a report on one dial of a callback (`spacing_ms` apart);
    (updated | unchanged | unknown, outcome or status)."""
    outcome, current = await store.scripts.voice_callback(
        keys=[Keys(tenant).base], args=[message_id, attempt, leg, status, sid, dials_allowed, spacing_ms]
    )
    return text(outcome), text(current)


async def simulated_call(
    store: Store, tenant: str, *, sid: str, action: str, by: str = "", value: str = ""
) -> tuple[str, str]:
    """simulated_call.lua: a simulated call answered, declined, hung up `by` someone, put on
    hold, muted or sent digits (`value`); (changed | unchanged, its status after)."""
    outcome, status = await store.scripts.simulated_call(keys=[Keys(tenant).call(sid)], args=[action, by, value])
    return text(outcome), text(status)


async def outbox_send(store: Store, *, marker: str, outbox: str, provider_id: str, message: bytes, ttl_s: int) -> bool:
    """outbox_send.lua: keep a message in the sandbox outbox once; True if added."""
    added, _entry_id = await store.scripts.outbox_send(keys=[marker, outbox], args=[provider_id, message, ttl_s])
    return bool(int(added))


async def contact_refusal(
    store: Store, tenant: str, *, scope: str, channel: str, ident: str, other_ident: str = ""
) -> str | None:
    """contact_refusal.lua: why a campaign-like message may not reach the identity on the
    channel (opted_out, do_not_contact, revocation_pending), or None (router/consent.py)."""
    reason = await store.scripts["contact_refusal"](keys=[Keys(tenant).base], args=[scope, channel, ident, other_ident])
    return text(reason) if reason else None


async def lease(store: Store, *, key: str, owner: str, lease_ms: int) -> bool:
    """lease.lua: take the lease `key`, or renew it when `owner` holds it; True if held.
    Sent by the store's client of the moment (a test may stand in for it)."""
    return bool(int(await store.scripts.lease(keys=[key], args=[owner, lease_ms], client=store.redis)))


# the archive (router/records)


async def evict(
    store: Store,
    tenant: str,
    *,
    conversation: str,
    held: bytes,
    closed_before: int,
    message_ids: str,
    fields: Iterable[str],
    thread_refs: str = "",
) -> str:
    """evict.lua: remove a closed conversation's records from Redis if they are still
    what the archive committed (`held`, spelt from `fields`, the hash's field names, and
    the replies `message_ids`, one a line), with the email thread references that lead to
    it (`thread_refs`, one a line: its customers' Message-IDs; its token and its replies'
    Message-IDs the script finds); "evicted", "gone", "open", "recent" or "changed"."""
    args = [conversation, held, closed_before, message_ids, thread_refs, *fields]
    return text(await store.scripts.evict(keys=[Keys(tenant).base], args=args))


# satisfaction surveys (router/surveys.py)


async def survey_send(
    store: Store,
    tenant: str,
    conversation: str,
    *,
    channel: str,
    address: str,
    ident: str,
    scope: str,
    outbound: bytes,
    entry: bytes,
    message: str,
    day: str,
    caps: str,
    cap_ttl: int,
    answer_until: int,
    asked: str = "close",
) -> str:
    """survey_send.lua: ask the customer of a closed conversation to rate it, at most once;
    `ident` is the address as an identity, `scope` the tenant's opt_out_scope, `caps` the
    channel's survey caps as "max:window_ms" joined by ","; `asked` "call" for the voice
    keypad survey (the call's TwiML asks: nothing queued); the outcome (sent, or why not)."""
    keys = Keys(tenant)
    cap = keys.contact_attempts(channel, f"survey:addr:{address}") if caps else ""
    args = [
        conversation,
        channel,
        address,
        ident,
        scope,
        outbound,
        entry,
        message,
        day,
        keys.survey_day(day),
        keys.outbound,
        cap,
        caps,
        cap_ttl,
        answer_until,
        asked,
    ]
    return text(await store.scripts.survey_send(keys=[keys.base], args=args))


async def survey_answer(
    store: Store,
    tenant: str,
    conversation: str,
    *,
    mode: str,
    ident: str,
    match: str,
    rating: int | str,
    comment: str,
    low: int,
    day: str,
    entry: bytes,
    group: str = "",
    consumer: str = "",
    entry_id: str = "",
) -> tuple[str, str]:
    """survey_answer.lua: record a rating (mode "rate") or a comment after it ("comment");
    `match` "pending" for a text reply (with its inbound entry, acknowledged in the same
    step), "owner" for an answer from the customer's own address; (outcome, the rating)."""
    keys = Keys(tenant)
    args = [
        mode,
        conversation,
        ident,
        match,
        rating,
        comment,
        low,
        day,
        keys.survey_day(day),
        keys.survey_comments,
        keys.survey_followups,
        entry,
        keys.inbound,
        group,
        consumer,
        entry_id,
    ]
    outcome, given = await store.scripts.survey_answer(keys=[keys.base], args=args)
    return text(outcome), text(given)
# agent-paced campaign calls (router/campaigns/dial_state.py)


async def campaign_dial_outcome(
    store: Store,
    tenant: str,
    *,
    figures: str,
    ringing: str,
    marker: str,
    message: str,
    outcome: str,
    fate: str,
    ring_ms: int,
    day: str,
    ttl: int,
) -> bool:
    """campaign_dial_outcome.lua: count a campaign call's outcome once; True the first time."""
    args = [figures, ringing, marker, message, outcome, fate, ring_ms, day, ttl]
    return bool(await store.scripts.campaign_dial_outcome(keys=[Keys(tenant).base], args=args))


async def campaign_agent_figures(
    store: Store,
    tenant: str,
    *,
    figures: str,
    marker: str,
    ttl: int,
    kind: str,
    agent: str,
    conversation: str,
    at: int,
    disposition: str = "",
    cents: int = 0,
    session: str = "",
) -> bool:
    """campaign_agent_figures.lua: one event of a campaign conversation for its agent's
    figures, counted once; True the first time. `session`: the campaign's session key, whose
    agents wait between calls (their wait time)."""
    args = [figures, marker, ttl, kind, agent, conversation, at, disposition, cents, session]
    return bool(await store.scripts.campaign_agent_figures(keys=[Keys(tenant).base], args=args))
