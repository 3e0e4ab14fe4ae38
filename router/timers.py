"""Timers kept in Redis (a sorted set per shard, scored by due time), so they
survive restarts: reservation timeouts, wrap-up ends, escalation steps,
service-level checks and the end of a sticky hold.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from router import assign, atomic, logcontext
from router.config import Tenant
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

LEASE_MS = 30_000  # a claimed timer comes due again after this if its worker died
# Timer kinds a channel adds (its package registers them on import, as agents.ON_ACCEPT):
# kind -> what to do with the rest of the member. The timer is removed once it returns.
EXTRA: dict[str, Callable[[Store, Tenant, str], Awaitable[None]]] = {}


async def run_due(store: Store, tenant: Tenant, *, limit: int = 200) -> int:
    """Handle the tenant's due timers; returns how many were handled."""
    due = await atomic.claim_timers(store, tenant.id, lease_ms=LEASE_MS, limit=limit)
    for member in due:
        with logcontext.about(tenant=tenant.id):
            try:
                await handle(store, tenant, member)
            except Exception:
                log.exception("timer %s of %s failed; it comes due again in %d ms", member, tenant.id, LEASE_MS)
    return len(due)


async def handle(store: Store, tenant: Tenant, member: str) -> None:
    keys = Keys(tenant.id)
    kind, _, rest = member.partition(":")
    if kind == "res":
        await assign.respond(store, tenant.id, rest, "timeout", "", tenant.max_missed_offers)
    elif kind == "wrap":
        agent, _, conversation = rest.partition(":")
        if await atomic.wrapup(store, tenant.id, agent=agent, conversation=conversation):
            await assign.assign_agent(store, tenant.id, agent)
    elif kind == "esc":
        conversation, _, step = rest.rpartition(":")
        action, target = await atomic.escalate(store, tenant.id, conversation, step=int(step))
        if action != "skipped":
            await assign.assign_queue(store, tenant.id, target)
    elif kind == "sla":
        _outcome, target = await atomic.sla(store, tenant.id, rest)
        if target:
            await assign.assign_queue(store, tenant.id, target)
    elif kind in ("route", "hold"):  # a decline window or a sticky hold ended: offer it again
        await store.redis.zrem(keys.timers, member)
        queue = await store.redis.hget(keys.conversation(rest), "queue")
        if queue:
            await assign.assign_queue(store, tenant.id, queue.decode())
    elif kind in EXTRA:
        await EXTRA[kind](store, tenant, rest)
        await store.redis.zrem(keys.timers, member)
    else:
        log.error("unknown timer %r in %s; dropped", member, tenant.id)
        await store.redis.zrem(keys.timers, member)
