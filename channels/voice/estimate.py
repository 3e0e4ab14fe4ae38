"""What a waiting caller is told, honestly: their place among the callers of their voice
queue, and the expected wait from the agents who can take the call now and the queue's
measured handle time, or that nobody can say when no agent is there to take it.

- Position: the caller's rank among the queue's waiting voice contacts (calls, and
  callbacks, which keep a caller's place), by the queue's own order (priority, then
  age). Messages, emails and chats waiting in the same queue are not ahead of a caller
  on the phone line, so they are not counted.
- Agents able to take it now: the queue's members at the conversation's escalation
  level who are available and can take calls (a voice capacity). An agent on another
  call counts: they take the next caller when it ends.
- Handle time: the average of the queue's latest answered calls, talk time
  (from the bridge to the hang-up, `record_handled`) plus the queue's wrap-up; the
  tenant's `expected_handle_seconds` until MIN_SAMPLES calls were measured.
- Nobody able: no estimate ("we cannot estimate"), and the caller hears the callback
  and voicemail options before anything else.
"""

from __future__ import annotations

import math

import msgspec

from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

SAMPLES = 20  # calls kept per queue for the handle time
MIN_SAMPLES = 3  # measured calls before the measurement replaces the configured estimate


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """A waiting caller's figures; position 0 while an agent is being offered the call."""

    position: int
    able: int  # agents who can take the call now
    handle_s: float  # the handle time used
    wait_s: float | None  # None: no estimate (nobody is there to take it)


async def figures(store: Store, tenant: Tenant, record: dict[str, str]) -> Figures:
    """The figures of a waiting call's conversation (its record's fields)."""
    keys = Keys(tenant.id)
    queue, level = record.get("queue", ""), int(record.get("level", "0") or 0)
    rank = await store.redis.zrank(keys.waiting_on(queue, "voice"), record["id"])
    able = await able_agents(store, tenant.id, queue, level)
    handle_s = await handle_seconds(store, tenant, queue)
    if rank is None:
        return Figures(position=0, able=able, handle_s=handle_s, wait_s=None)
    position = rank + 1
    wait_s = position * handle_s / able if able else None
    return Figures(position=position, able=able, handle_s=handle_s, wait_s=wait_s)


async def able_agents(store: Store, tenant: str, queue: str, level: int) -> int:
    """The queue's members at this level who are available and take calls."""
    keys = Keys(tenant)
    members = [text(m) for m in await store.redis.zrange(keys.members(queue, level), 0, -1)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.hmget(keys.agent(member), "presence", "cap:voice")
        rows = await pipe.execute()
    return sum(1 for presence, cap in rows if presence == b"available" and int(cap or 0) > 0)


async def handle_seconds(store: Store, tenant: Tenant, queue: str) -> float:
    """The queue's measured handle time, else the tenant's configured one."""
    samples = [int(s) for s in await store.redis.lrange(Keys(tenant.id).voice_handled(queue), 0, SAMPLES - 1)]
    if len(samples) < MIN_SAMPLES:
        return tenant.voice.expected_handle_seconds
    wrapup = tenant.queue(queue).wrapup_seconds if _has_queue(tenant, queue) else None
    return sum(samples) / len(samples) / 1000 + (wrapup if wrapup is not None else tenant.wrapup_seconds)


def _has_queue(tenant: Tenant, queue: str) -> bool:
    return any(q.id == queue for q in tenant.queues)


async def record_handled(store: Store, tenant: str, queue: str, talk_ms: int) -> None:
    """One answered call's talk time, for its queue's handle time."""
    key = Keys(tenant).voice_handled(queue)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, str(max(0, talk_ms)))
        pipe.ltrim(key, 0, SAMPLES - 1)
        await pipe.execute()


def spoken(figures: Figures) -> str:
    """ "You are number 2 in the queue. The expected wait is about 4 minutes." """
    if figures.position == 0:
        return "An agent will be with you shortly."
    where = f"You are number {figures.position} in the queue."
    if figures.wait_s is None:
        return f"{where} We cannot estimate the wait right now, as no agent is available to take your call."
    minutes = math.floor(figures.wait_s / 60 + 0.5)
    if minutes < 1:
        expected = "less than a minute"
    else:
        expected = "about one minute" if minutes == 1 else f"about {minutes} minutes"
    return f"{where} The expected wait is {expected}."
