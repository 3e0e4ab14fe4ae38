"""The campaigns' Lua scripts (router/lua/campaigns/*.lua): one typed wrapper each.

Each script is one atomic decision on the tenant's shard. KEYS[1] is the shard's base
key (as for every script); the other keys, built by router.keys, come as arguments, and
all of them share the tenant's hash tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from router import scripts
from router.keys import Keys
from router.store import Store


class SendBatch(NamedTuple):
    """campaigns/send.lua's first arguments, shared by the batch (ARGV[1] to ARGV[14])."""

    status: str  # the campaign's status hash
    due: str  # its due set
    stats: str  # its counters
    outbound: str  # the tenant's outbound stream
    events: str  # the tenant's events stream
    queue: str  # where replies route
    campaign: str  # the campaign's id
    reply_until: int  # replies route to the campaign until (ms)
    cap_ttl: int  # the frequency caps' attempts are kept at least this long (ms)
    disputes: str  # the disputes set, or "" (not collections)
    priority: int  # the queue's priority, for the campaign's conversations
    campaign_key: str  # the campaign's hash (its state)
    scope: str  # the tenant's opt_out_scope: "person" (an opt-out covers every channel) or "channel"
    pending: str  # the campaign's messages not yet through the dispatcher


class RecipientArgs(NamedTuple):
    """campaigns/send.lua's arguments for one recipient, after the batch's (SendBatch)."""

    seq: int
    attempt: int
    channel: str
    address: str
    ident: str  # the address as an identity
    new_customer: str  # the customer's id if the identity has none yet
    conv: str  # the campaign's conversation with the recipient
    message: bytes  # the outbound message (events.encode)
    entry: bytes  # its history entry (MessagePack)
    message_event: bytes  # its MessageAdded event
    context: str  # the recipient's template fields (JSON)
    cap: str  # the frequency cap's attempts key, or ""
    cap_seen: int  # the attempts the worker saw (-1: no cap applies, nothing to recheck)
    message_id: str
    debt: str  # "debt:<account>" or ""
    variant: str  # the A/B variant's counter prefix ("v:<name>:") or ""
    other_ident: str  # the recipient's other identity ("" or, say, their email when texted)


class Claimed(NamedTuple):
    """What campaigns/claim.lua leased: recipient numbers, their audience blobs and statuses;
    with none due, when the next one is (ms; -1 for nobody left)."""

    seqs: list[bytes]
    recipients: list[bytes]
    statuses: list[bytes]
    next_due: int = 0


async def claim(store: Store, tenant: str, campaign: str, *, count: int, lease_ms: int) -> Claimed:
    """Lease up to `count` due recipients of a campaign to this worker for `lease_ms`."""
    keys = Keys(tenant)
    seqs, recipients, statuses, _now, *rest = await store.scripts["campaigns/claim"](
        keys=[keys.base],
        args=[
            keys.campaign_due(campaign),
            keys.campaign_audience(campaign),
            keys.campaign_status(campaign),
            count,
            lease_ms,
        ],
    )
    return Claimed(seqs, recipients, statuses, int(float(rest[0])) if rest else 0)


async def complete(store: Store, tenant: str, campaign: str) -> bool:
    """Finish a running campaign with nobody due and no message at the dispatcher
    (campaigns/complete.lua); True if it finished now."""
    keys = Keys(tenant)
    finished = await store.scripts["campaigns/complete"](
        keys=[keys.base],
        args=[
            keys.campaign(campaign),
            keys.campaign_due(campaign),
            keys.campaign_pending(campaign),
            keys.campaigns_running,
            campaign,
        ],
    )
    return bool(int(finished))


def send_call(store: Store, tenant: str, batch: SendBatch, recipients: list[RecipientArgs]) -> scripts.Call:
    """One campaigns/send.lua call for a chunk of recipients, to run pipelined
    (router.scripts.run_pipelined); its reply is one outcome per recipient."""
    return scripts.Call(
        store.scripts["campaigns/send"],
        Keys(tenant).base,
        [*batch, *(arg for recipient in recipients for arg in recipient)],
    )


class SendCheck(NamedTuple):
    """campaigns/begin_send.lua's arguments (ARGV[1] to ARGV[24]), before its caps (CapArgs)."""

    message_id: str
    payload: bytes  # the outbound message, kept in its delivery record as begin_send.lua keeps it
    lease_ms: int
    campaign_key: str  # the campaign's hash (its state)
    status: str  # the campaign's status hash
    due: str  # its due set
    stats: str  # its counters
    pending: str  # its messages not yet through the dispatcher
    seq: int
    attempt: int
    channel: str
    address: str
    conv: str  # the recipient's campaign conversation
    ident: str  # the address as an identity (whose customer a dispute may name)
    scope: str  # the tenant's opt_out_scope: "person" or "channel"
    other_ident: str  # the recipient's other identity ("" or, say, their email when texted)
    disputes: str  # the disputes set, or "" (not collections)
    debt: str  # "debt:<account>" or ""
    cap: str  # the caps' attempts key (where this message's attempt was recorded)
    talked: str  # the key of the last conversation about the debt (or address)
    open_from: int  # the window span around the judging moment (ms), 0 and 0 when outside it
    open_until: int
    reopens: int  # when the window opens next (ms)
    variant: str  # the A/B variant's counter prefix ("v:<name>:") or ""


class CapArgs(NamedTuple):
    """campaigns/begin_send.lua's arguments for one cap on the message's channel."""

    max_attempts: int
    days_ms: int
    quiet_ms: int


def begin_send_call(store: Store, tenant: str, check: SendCheck, caps: Sequence[CapArgs]) -> scripts.Call:
    """One campaigns/begin_send.lua call, for the dispatcher's pipeline: the send's lease
    if every rule of the campaign allows the message now, else its refusal recorded. Its
    reply is begin_send.lua's, or ("refused" | "held", attempts, reason)."""
    return scripts.Call(
        store.scripts["campaigns/begin_send"],
        Keys(tenant).base,
        [*check, *(arg for cap in caps for arg in cap)],
    )


class Settlement(NamedTuple):
    """campaigns/settle.lua's arguments for one recipient."""

    seq: int
    action: str  # later | final
    value: int | str  # due ms (later) or status (final)
    counter: str  # the counter to add 1 to, or ""


def settle_call(store: Store, tenant: str, campaign: str, entries: list[Settlement]) -> scripts.Call:
    """One campaigns/settle.lua call, to run pipelined; its reply is how many were settled."""
    keys = Keys(tenant)
    head = [keys.campaign_status(campaign), keys.campaign_due(campaign), keys.campaign_stats(campaign)]
    return scripts.Call(store.scripts["campaigns/settle"], keys.base, head + [a for entry in entries for a in entry])


async def outcome(
    store: Store,
    tenant: str,
    campaign: str,
    *,
    seq: int,
    attempt: int,
    outcome: str,
    next_channel: str,
    due_ms: int,
    reason: str,
    variant: str,
) -> bool:
    """Count a delivery outcome of a recipient's attempt once (campaigns/outcome.lua);
    False when that attempt is not the recipient's current one."""
    keys = Keys(tenant)
    counted = await store.scripts["campaigns/outcome"](
        keys=[keys.base],
        args=[
            keys.campaign_status(campaign),
            keys.campaign_due(campaign),
            keys.campaign_stats(campaign),
            seq,
            attempt,
            outcome,
            next_channel,
            due_ms,
            reason,
            variant,
            keys.campaign(campaign),
            keys.campaigns_running,
            campaign,
        ],
    )
    return bool(int(counted))


async def once(
    store: Store, tenant: str, campaign: str, *, flag: str, counter: str, variant: str, by: int = 1, value: str = "1"
) -> bool:
    """Set `flag` beside the campaign's statuses and add `by` to `counter`, unless the
    flag was set already (campaigns/once.lua); True the first time."""
    keys = Keys(tenant)
    first = await store.scripts["campaigns/once"](
        keys=[keys.base],
        args=[keys.campaign_status(campaign), keys.campaign_stats(campaign), flag, counter, variant, by, value],
    )
    return bool(int(first))


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket (workers/campaigns/pacing.py): its key, refill per minute, burst."""

    key: str
    per_minute: float
    burst: float


def _bucket_args(buckets: Sequence[Bucket]) -> list:
    return [arg for bucket in buckets for arg in (bucket.key, bucket.per_minute, bucket.burst)]


async def take_tokens(store: Store, tenant: str, *, want: int, buckets: Sequence[Bucket]) -> tuple[int, int]:
    """campaigns/take_tokens.lua: up to `want` tokens from every bucket at once;
    (granted, ms until the next token when none was granted)."""
    granted, wait = await store.scripts["campaigns/take_tokens"](
        keys=[Keys(tenant).base], args=[want, *_bucket_args(buckets)]
    )
    return int(granted), int(wait)


async def give_tokens(store: Store, tenant: str, *, count: int, buckets: Sequence[Bucket]) -> None:
    """campaigns/give_tokens.lua: return `count` unspent tokens to every bucket."""
    await store.scripts["campaigns/give_tokens"](keys=[Keys(tenant).base], args=[count, *_bucket_args(buckets)])
