"""What the dialler of an agent-paced campaign sees in Redis: its agents (free or busy),
its calls in flight, and what it has measured. The campaigns worker reads it to pace
(router.campaigns.dialing), the voice channel's answer webhook writes each call's outcome
and asks for a free agent at the moment a person answers.

- Agents: the campaign queue's members (level 0) who are available and take calls. Free
  is one in the voice ready set with no call in hand; the queue's waiting calls are
  already theirs (an answered campaign call waits there for its agent's screen), so they
  are taken off. Busy is the rest: on a call, in wrap-up, or offered one.
- In flight: the campaign's calls from the moment the worker queues them until the answer
  or the status report says how they came out (Keys.campaign_ringing). One whose report
  was lost leaves after STALE_MS rather than holding the pace down for ever.
- Figures (Keys.campaign_dial_figures): counted once per message by
  campaign_dial_outcome.lua; answers and abandons also per day for the 30-day rate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from router import atomic
from router.campaigns.dialing import ABANDON_LIMIT, Floor, Measures
from router.keys import Keys
from router.store import Store, text

ABANDON_DAYS = 30
# A call queued this long ago without an outcome is not counted as in flight: the
# dispatcher holds a message a few seconds, Twilio rings 30 s and AMD takes a few more.
STALE_MS = 120_000
NEVER_RANG = frozenset({"held", "refused", "failed"})  # delivery statuses of a call not placed
MARKER_MS = 2 * 86_400_000  # an outcome marker outlives any retry of its webhook


async def floor(store: Store, tenant: str, campaign: str, queue: str, now_ms: int) -> Floor:
    free, busy = await agents(store, tenant, queue)
    return Floor(free_agents=free, busy_agents=busy, in_flight=await in_flight(store, tenant, campaign, now_ms))


async def in_flight(store: Store, tenant: str, campaign: str, now_ms: int) -> int:
    """The campaign's calls queued or ringing. A call the dispatcher refused or held at the
    moment of dialling (a rule said no: recorded with its reason on its delivery), or that
    Twilio refused, never rings: it leaves the set here."""
    keys = Keys(tenant)
    ringing = keys.campaign_ringing(campaign)
    await store.redis.zremrangebyscore(ringing, "-inf", now_ms - STALE_MS)
    messages = [text(m) for m in await store.redis.zrange(ringing, 0, -1)]
    if not messages:
        return 0
    async with store.redis.pipeline(transaction=False) as pipe:
        for message in messages:
            pipe.hget(keys.delivery(message), "status")
        statuses = await pipe.execute()
    gone = [m for m, status in zip(messages, statuses, strict=True) if text(status or b"") in NEVER_RANG]
    if gone:
        await store.redis.zrem(ringing, *gone)
    return len(messages) - len(gone)


async def agents(store: Store, tenant: str, queue: str) -> tuple[int, int]:
    """(free, busy) agents of the queue. Free is also the answer webhook's question when a
    person picks up: none means an abandon."""
    keys = Keys(tenant)
    redis = store.redis
    members = [text(m) for m in await redis.zrange(keys.members(queue, 0), 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.hmget(keys.agent(member), "presence", "cap:voice", "load:voice")
            pipe.zscore(keys.ready("voice"), member)
        pipe.zcard(keys.waiting_on(queue, "voice"))
        replies = await pipe.execute()
    free = busy = 0
    for index in range(len(members)):
        (presence, cap, load), ready = replies[2 * index], replies[2 * index + 1]
        if presence != b"available" or int(cap or 0) <= 0:
            continue
        if ready is not None and int(load or 0) == 0:
            free += 1
        else:
            busy += 1
    taken = min(free, int(replies[-1]))  # waiting calls are already the free agents'
    return free - taken, busy + taken


async def measures(store: Store, tenant: str, campaign: str, handle_s: float, today: dt.date) -> Measures:
    keys = Keys(tenant)
    days = [(today - dt.timedelta(days=n)).isoformat() for n in range(ABANDON_DAYS)]
    fields = ["outcomes", "answered", "ring_ms"]
    fields += [f"answered:{d}" for d in days] + [f"abandoned:{d}" for d in days]
    raw = [int(v or 0) for v in await store.redis.hmget(keys.campaign_dial_figures(campaign), fields)]
    outcomes, answered, ring_ms = raw[:3]
    return Measures(
        outcomes=outcomes,
        answered=answered,
        ring_s=ring_ms / answered / 1000 if answered else Measures().ring_s,
        handle_s=handle_s,
        answered_30d=sum(raw[3 : 3 + ABANDON_DAYS]),
        abandoned_30d=sum(raw[3 + ABANDON_DAYS :]),
    )


async def ringing(store: Store, tenant: str, campaign: str, messages: Iterable[str], now_ms: int) -> None:
    """The worker queued these calls: in flight from now."""
    batch = {message: now_ms for message in messages}
    if batch:
        await store.redis.zadd(Keys(tenant).campaign_ringing(campaign), batch)


async def record_outcome(
    store: Store,
    tenant: str,
    campaign: str,
    message: str,
    outcome: str,
    *,
    fate: str = "",
    ring_ms: int = 0,
    today: dt.date,
) -> bool:
    """Count a call's outcome once ("person", "machine" or "none"; a person's fate
    "connected" or "abandoned"); True the first time."""
    keys = Keys(tenant)
    return await atomic.campaign_dial_outcome(
        store,
        tenant,
        figures=keys.campaign_dial_figures(campaign),
        ringing=keys.campaign_ringing(campaign),
        marker=keys.seen("dial", message),
        message=message,
        outcome=outcome,
        fate=fate,
        ring_ms=max(0, ring_ms),
        day=today.isoformat(),
        ttl=MARKER_MS,
    )


async def figures(store: Store, tenant: str, campaign: str) -> dict[str, int]:
    """The campaign's dialler totals (outcomes, answered, machines, connects, abandoned)."""
    raw = await store.redis.hgetall(Keys(tenant).campaign_dial_figures(campaign))
    return {text(k): int(v) for k, v in raw.items() if b":" not in k}


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """An agent-paced campaign's dialler figures, for `campaign results` and its page."""

    dials: int  # calls placed or in flight
    in_flight: int
    answered: int  # by a person
    machines: int
    connects: int  # people put through to an agent
    abandoned: int  # people who answered with no agent free
    answer_rate: float  # people per call that rang out
    answered_30d: int
    abandoned_30d: int
    abandon_rate_30d: float  # abandoned per answered, the rolling 30 days (limit: ABANDON_LIMIT)


async def summary(store: Store, tenant: str, campaign: str, now: dt.datetime) -> Summary:
    totals = await figures(store, tenant, campaign)
    ringing = await in_flight(store, tenant, campaign, int(now.timestamp() * 1000))
    measured = await measures(store, tenant, campaign, 0.0, now.date())
    return Summary(
        dials=totals.get("outcomes", 0) + ringing,
        in_flight=ringing,
        answered=totals.get("answered", 0),
        machines=totals.get("machines", 0),
        connects=totals.get("connects", 0),
        abandoned=totals.get("abandoned", 0),
        answer_rate=measured.answer_rate,
        answered_30d=measured.answered_30d,
        abandoned_30d=measured.abandoned_30d,
        abandon_rate_30d=measured.abandon_rate,
    )


def describe(s: Summary, mode: str) -> str:
    """The figures in a sentence (the CLI's `campaign results`)."""
    return (
        f"dialler ({mode}): {s.dials:,} dials ({s.in_flight:,} in flight), {s.answered:,} answered by a person "
        f"({s.answer_rate:.1%} of calls that rang out), {s.machines:,} machines, {s.connects:,} put through to an "
        f"agent, {s.abandoned:,} abandoned; {s.abandon_rate_30d:.2%} of answered calls abandoned over 30 days "
        f"(limit {ABANDON_LIMIT:.0%})"
    )
