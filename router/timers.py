"""Timers kept in Redis (a sorted set per shard, scored by due time), so they
survive restarts: reservation timeouts, wrap-up ends, escalation steps,
service-level checks, the end of a sticky hold and satisfaction surveys.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from router import assign, atomic, logcontext, surveys
from router.config import Tenant
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

LEASE_MS = 30_000  # a claimed timer comes due again after this if its worker died
# Timer kinds a channel adds (its package registers them on import, as agents.ON_ACCEPT):
# kind -> what to do with the rest of the member. The timer is removed once it returns.
EXTRA: dict[str, Callable[[Store, Tenant, str], Awaitable[None]]] = {}
DEFAULT_BASE_URL = "http://127.0.0.1:8080"  # the web process's address when the caller gives none


async def run_due(store: Store, tenant: Tenant, *, limit: int = 200, base_url: str = "") -> int:
    """Handle the tenant's due timers; returns how many were handled. `base_url` is where
    the web process is reached (the links of survey email)."""
    due = await atomic.claim_timers(store, tenant.id, lease_ms=LEASE_MS, limit=limit)
    for member in due:
        with logcontext.about(tenant=tenant.id):
            try:
                await handle(store, tenant, member, base_url=base_url)
            except Exception:
                log.exception("timer %s of %s failed; it comes due again in %d ms", member, tenant.id, LEASE_MS)
    return len(due)


async def handle(store: Store, tenant: Tenant, member: str, *, base_url: str = "") -> None:
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
    elif kind == surveys.TIMER:  # a closed conversation's satisfaction survey (survey_send.lua removes it)
        await surveys.send_due(store, tenant, rest, base_url=base_url or DEFAULT_BASE_URL)
    elif kind in EXTRA:
        await EXTRA[kind](store, tenant, rest)
        await store.redis.zrem(keys.timers, member)
    else:
        log.error("unknown timer %r in %s; dropped", member, tenant.id)
        await store.redis.zrem(keys.timers, member)
