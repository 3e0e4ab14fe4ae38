"""Readiness of a deployment, per tenant: its shard answers, its consumer groups exist, a
live routing, dispatch and timers worker serves it, and how far behind its groups are. The
web process's /readyz and `contactrouter health` both ask here.

Workers say they are alive with a heartbeat: every HEARTBEAT_S, each process running a
watched role sets, for every tenant, a key that expires after ALIVE_MS (`heartbeat`, run
beside the roles by router/app/processes.py). Redis expires it, so no clocks are compared,
and a shard that cannot be reached is reported for its own tenants only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import msgspec
from redis.exceptions import ReadOnlyError, RedisError, ResponseError, TryAgainError

from router.config import Deployment
from router.keys import ARCHIVE_GROUP, DISPATCH_GROUP, ROUTING_GROUP, Keys
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, text

log = logging.getLogger(__name__)

# A probe answers within this, whatever the store does: a load balancer or an
# orchestrator gives up on a slow answer and learns nothing from it.
CHECK_TIMEOUT_S = 2.0
WATCHED_ROLES = ("routing", "dispatch", "timers")  # a tenant without one of these is not served
HEARTBEAT_S = 5.0
ALIVE_MS = 15_000  # three missed heartbeats: the role has no live worker for the tenant
LAG_COUNT_CAP = 1_000  # undelivered entries counted one by one; beyond, Redis's own count

# The shard is away (down, failing over, resharding), as opposed to an answer about the data.
_AWAY = (*STORE_ERRORS, TryAgainError, ReadOnlyError)

Status = Literal["ready", "degraded", "unready"]


class GroupState(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    stream: str
    group: str
    exists: bool
    consumers: int = 0
    pending: int = 0  # delivered to a consumer, not yet acknowledged (its pending entries list)
    lag: int | None = None  # not yet delivered to any consumer; None when the shard did not answer
    length: int = 0


class WorkerState(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    role: str
    alive: bool
    last: str = ""  # the consumer name of the process that beat last, while alive


class Health(msgspec.Struct, frozen=True, kw_only=True):
    # The web process can take traffic: some shard answers and the groups were made.
    ready: bool
    # ready: nothing wrong; degraded: ready, but a tenant is not served (no live worker, its
    # shard away, a backlog over a limit); unready: the store does not answer at all.
    status: Status
    problems: list[str]
    groups: list[GroupState]
    workers: list[WorkerState] = msgspec.field(default_factory=list)


def expected_groups(deployment: Deployment) -> list[tuple[str, str, str]]:
    """(tenant, stream, group) of every consumer group the roles read."""
    found = []
    for tenant in deployment.tenants:
        keys = Keys(tenant.id)
        found += [(tenant.id, keys.inbound, ROUTING_GROUP), (tenant.id, keys.outbound, DISPATCH_GROUP)]
    return found


class _TenantReading(msgspec.Struct, kw_only=True):
    tenant: str
    groups: list[GroupState]
    workers: list[WorkerState]
    away: BaseException | None = None  # the tenant's shard did not answer


async def _by_shard(store: Store, redis: Any, tenants: list[str]) -> list[list[str]]:
    """The tenants in groups that live on one node each (one group on a single Redis)."""
    if not store.cluster:
        return [tenants] if tenants else []
    await redis.initialize()  # the slots' owners (nothing to do once known)
    shards: dict[str, list[str]] = {}
    for tenant in tenants:
        shards.setdefault(redis.get_node_from_key(Keys(tenant).base).name, []).append(tenant)
    return list(shards.values())


async def _read(store: Store, deployment: Deployment, redis: Any) -> list[_TenantReading]:
    """Every tenant's groups, streams and heartbeats: one pipeline per shard, the shards in
    parallel. On a cluster a shard that fails fails only its own tenants (a cluster's
    pipeline fails as a whole when one node does, so each node gets its own)."""
    shards = await _by_shard(store, redis, [tenant.id for tenant in deployment.tenants])
    results = await asyncio.gather(*(_read_shard(redis, tenants) for tenants in shards), return_exceptions=True)
    readings = []
    for tenants, result in zip(shards, results, strict=True):
        if isinstance(result, BaseException):
            if not store.cluster or not isinstance(result, _AWAY):
                raise result  # the one Redis is away (check() says so once), or a bug
            readings += [_away(tenant, result) for tenant in tenants]
        else:
            readings += result
    return readings


def _away(tenant: str, error: BaseException) -> _TenantReading:
    groups = [GroupState(tenant=tenant, stream=s, group=g, exists=False) for _t, s, g in _groups_of(Keys(tenant))]
    return _TenantReading(tenant=tenant, groups=groups, workers=[], away=error)


async def _read_shard(redis: Any, tenants: list[str]) -> list[_TenantReading]:
    async with redis.pipeline(transaction=False) as pipe:
        for tenant in tenants:
            keys = Keys(tenant)
            for stream in (keys.inbound, keys.outbound, keys.events):
                pipe.xinfo_stream(stream)
                pipe.xinfo_groups(stream)
            for role in WATCHED_ROLES:  # GETs: a cluster's pipeline takes no MGET
                pipe.get(keys.worker_alive(role))
        replies = await pipe.execute(raise_on_error=False)
    readings = []
    per_tenant = 6 + len(WATCHED_ROLES)
    for index, tenant in enumerate(tenants):
        mine = replies[index * per_tenant : (index + 1) * per_tenant]
        stream_in, groups_in, stream_out, groups_out, stream_ev, groups_ev, *beats = mine
        away = next((reply for reply in mine if isinstance(reply, _AWAY)), None)
        keys = Keys(tenant)
        if away is not None:  # CLUSTERDOWN, TRYAGAIN: the shard is away, not the stream missing
            readings.append(_away(tenant, away))
            continue
        groups = [
            await _group_state(redis, tenant, keys.inbound, ROUTING_GROUP, stream_in, groups_in),
            await _group_state(redis, tenant, keys.outbound, DISPATCH_GROUP, stream_out, groups_out),
        ]
        # The archive's group is there only where an archive runs (DATABASE_URL): shown when it is.
        archive = await _group_state(redis, tenant, keys.events, ARCHIVE_GROUP, stream_ev, groups_ev)
        if archive.exists:
            groups.append(archive)
        workers = [
            WorkerState(tenant=tenant, role=role, alive=beat is not None, last=text(beat) if beat else "")
            for role, beat in zip(WATCHED_ROLES, beats, strict=True)
        ]
        readings.append(_TenantReading(tenant=tenant, groups=groups, workers=workers))
    return readings


def _groups_of(keys: Keys) -> list[tuple[str, str, str]]:
    return [(keys.shard, keys.inbound, ROUTING_GROUP), (keys.shard, keys.outbound, DISPATCH_GROUP)]


async def _group_state(redis: Any, tenant: str, stream: str, group: str, info: Any, groups: Any) -> GroupState:
    if isinstance(info, ResponseError) or isinstance(groups, ResponseError):  # no such stream yet
        return GroupState(tenant=tenant, stream=stream, group=group, exists=False)
    found = next((g for g in groups if text(g["name"]) == group), None)
    if found is None:
        return GroupState(tenant=tenant, stream=stream, group=group, exists=False, length=int(info["length"]))
    return GroupState(
        tenant=tenant,
        stream=stream,
        group=group,
        exists=True,
        consumers=int(found["consumers"]),
        pending=int(found["pending"]),
        lag=await _lag(redis, stream, found, text(info["last-generated-id"])),
        length=int(info["length"]),
    )


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _lag(redis: Any, stream: str, group: dict, last_generated: str) -> int:
    """Entries the group has not delivered yet. Redis's own `lag` comes from a counter that
    a Redis 7.0 replica does not carry, so after a failover it can stay wrong for good;
    this reads the ids instead: none when the group has delivered the stream's last id,
    else those after its last delivered one (counted up to LAG_COUNT_CAP)."""
    delivered = text(group["last-delivered-id"])
    if _id(delivered) >= _id(last_generated):
        return 0
    after = await redis.xrange(stream, min=f"({delivered}", max="+", count=LAG_COUNT_CAP + 1)
    if len(after) <= LAG_COUNT_CAP:
        return len(after)
    reported = group.get("lag")
    return max(LAG_COUNT_CAP, int(reported)) if reported is not None else LAG_COUNT_CAP


async def group_states(store: Store, deployment: Deployment, *, redis: Any = None) -> list[GroupState]:
    """Every expected group and its backlog, through `redis` if given (check() passes the
    store's fail-fast probe client). A group on a shard that did not answer has lag None."""
    readings = await _read(store, deployment, store.redis if redis is None else redis)
    return [group for reading in readings for group in reading.groups]


async def check(
    store: Store, deployment: Deployment, *, max_pending: int | None = None, max_lag: int | None = None
) -> Health:
    """Per tenant: its shard answers, its groups exist, a routing, dispatch and timers worker
    beat within ALIVE_MS; with limits, a group holding more pending or undelivered entries
    than allowed is a problem too."""
    # The probe client: no retries, a short timeout. The main client would wait out
    # an outage (seconds of retries) before the check could say "not ready".
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            readings = await _read(store, deployment, store.probe)
    except TimeoutError:
        problem = f"store unreachable: no answer within {CHECK_TIMEOUT_S:g} s"
        return Health(ready=False, status="unready", problems=[problem], groups=[])
    except (*STORE_ERRORS, RedisError, OSError) as exc:
        return Health(ready=False, status="unready", problems=[f"store unreachable: {exc}"], groups=[])
    problems: list[str] = []
    missing_group = False
    for reading in readings:
        if reading.away is not None:
            problems.append(f"{reading.tenant}: its shard is unreachable: {reading.away}")
            continue
        for state in reading.groups:
            where = f"{state.stream}: consumer group {state.group}"
            if not state.exists:
                missing_group = True
                problems.append(f"{state.stream}: no consumer group {state.group}")
            elif max_pending is not None and state.pending > max_pending:
                problems.append(f"{where} has {state.pending} pending entries (limit {max_pending})")
            elif max_lag is not None and state.lag is not None and state.lag > max_lag:
                problems.append(f"{where} is {state.lag} entries behind (limit {max_lag})")
        for worker in reading.workers:
            if not worker.alive:
                problems.append(
                    f"{reading.tenant}: no live {worker.role} worker (none beat within {ALIVE_MS // 1000} s)"
                )
    answered = [reading for reading in readings if reading.away is None]
    ready = bool(answered) and not missing_group
    status: Status = "ready" if not problems else ("degraded" if ready else "unready")
    return Health(
        ready=ready,
        status=status,
        problems=problems,
        groups=[group for reading in readings for group in reading.groups],
        workers=[worker for reading in readings for worker in reading.workers],
    )


async def beat(store: Store, deployment: Deployment, roles: list[str], name: str) -> list[BaseException]:
    """One heartbeat of a process running `roles`: for every tenant, each role's key, set to
    the process's name, expiring after ALIVE_MS. Through the fail-fast client, one pipeline
    per shard, so a shard that is away delays and fails no other's beats; returns the
    errors of the shards that failed."""

    async def shard(tenants: list[str]) -> None:
        async with store.probe.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                for role in roles:
                    pipe.set(Keys(tenant).worker_alive(role), name, px=ALIVE_MS)
            await pipe.execute()

    shards = await _by_shard(store, store.probe, [tenant.id for tenant in deployment.tenants])
    return [r for r in await asyncio.gather(*map(shard, shards), return_exceptions=True) if r is not None]


async def heartbeat(store: Store, deployment: Deployment, roles: list[str], name: str, stop: asyncio.Event) -> None:
    """Beat every HEARTBEAT_S for the watched ones of `roles` until `stop`. A store that is
    away is the roles' to report; the beats simply lapse, which is what readiness reads."""
    watched = [role for role in roles if role in WATCHED_ROLES]
    if not watched or not deployment.tenants:
        return
    while not stop.is_set():
        try:
            failed = await beat(store, deployment, watched, name)
        except asyncio.CancelledError:
            raise
        except (*STORE_ERRORS, RedisError, OSError) as exc:
            failed = [exc]
        for error in failed:  # the roles report an outage; the lapsing beats tell readiness
            log.debug("heartbeat of %s not written: %s", name, error)
        if await stopped(stop, HEARTBEAT_S):
            return
