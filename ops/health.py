"""Readiness of a deployment: the store answers and every consumer group exists,
with each group's backlog (pending and lag). The web process's /readyz and the
`contactrouter health` command (for the other roles' probes) both ask here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from redis.exceptions import RedisError, ResponseError

from router.config import Deployment
from router.keys import ARCHIVE_GROUP, DISPATCH_GROUP, ROUTING_GROUP, Keys
from router.store import STORE_ERRORS, Store, text

# A probe answers within this, whatever the store does: a load balancer or an
# orchestrator gives up on a slow answer and learns nothing from it.
CHECK_TIMEOUT_S = 2.0


class GroupState(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    stream: str
    group: str
    exists: bool
    consumers: int = 0
    pending: int = 0  # delivered to a consumer, not yet acknowledged
    lag: int | None = None  # not yet delivered to any consumer; None when Redis cannot tell (after a trim)
    length: int = 0


class Health(msgspec.Struct, frozen=True, kw_only=True):
    ready: bool
    problems: list[str]
    groups: list[GroupState]


def expected_groups(deployment: Deployment) -> list[tuple[str, str, str]]:
    """(tenant, stream, group) of every consumer group the roles read."""
    found = []
    for tenant in deployment.tenants:
        keys = Keys(tenant.id)
        found += [(tenant.id, keys.inbound, ROUTING_GROUP), (tenant.id, keys.outbound, DISPATCH_GROUP)]
    return found


async def group_states(store: Store, deployment: Deployment, *, redis: Any = None) -> list[GroupState]:
    """Every expected group and its backlog (two round trips per stream), through
    `redis` if given (check() passes the store's fail-fast probe client)."""
    redis = store.redis if redis is None else redis
    states = []
    # The archive's group is there only where an archive runs (DATABASE_URL): shown when it is.
    optional = [(t.id, Keys(t.id).events, ARCHIVE_GROUP) for t in deployment.tenants]
    for tenant, stream, group in expected_groups(deployment) + optional:
        try:
            groups = {text(g["name"]): g for g in await redis.xinfo_groups(stream)}
            length = int(await redis.xlen(stream))
        except ResponseError:  # no such stream yet
            groups, length = {}, 0
        info = groups.get(group)
        if info is None:
            if group != ARCHIVE_GROUP:
                states.append(GroupState(tenant=tenant, stream=stream, group=group, exists=False))
            continue
        lag = info.get("lag")
        states.append(
            GroupState(
                tenant=tenant,
                stream=stream,
                group=group,
                exists=True,
                consumers=int(info["consumers"]),
                pending=int(info["pending"]),
                lag=None if lag is None else int(lag),
                length=length,
            )
        )
    return states


async def check(
    store: Store, deployment: Deployment, *, max_pending: int | None = None, max_lag: int | None = None
) -> Health:
    """Ready when the store answers and every consumer group exists; with limits, a group
    holding more pending or undelivered entries than allowed is a problem too."""
    # The probe client: no retries, a short timeout. The main client would wait out
    # an outage (seconds of retries) before the check could say "not ready".
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await store.probe.ping()
            states = await group_states(store, deployment, redis=store.probe)
    except TimeoutError:
        return Health(ready=False, problems=[f"store unreachable: no answer within {CHECK_TIMEOUT_S:g} s"], groups=[])
    except (*STORE_ERRORS, RedisError, OSError) as exc:
        return Health(ready=False, problems=[f"store unreachable: {exc}"], groups=[])
    problems = []
    for state in states:
        where = f"{state.stream}: consumer group {state.group}"
        if not state.exists:
            problems.append(f"{state.stream}: no consumer group {state.group}")
        elif max_pending is not None and state.pending > max_pending:
            problems.append(f"{where} has {state.pending} pending entries (limit {max_pending})")
        elif max_lag is not None and state.lag is not None and state.lag > max_lag:
            problems.append(f"{where} is {state.lag} entries behind (limit {max_lag})")
    return Health(ready=not problems, problems=problems, groups=states)
