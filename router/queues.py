"""Queues and agents from the configuration into Redis, for the routing scripts.

Target expressions are evaluated here, in Python, whenever the configuration
is applied: each queue gets one member set per escalation level (level 0 is
its target; level k adds the widen expressions of its first k steps), scored
by the agent's proficiency in the queue's skill. The scripts then only test
set membership, which keeps every routing decision to one script call.
"""

from __future__ import annotations

import json
from typing import Any

from router import atomic
from router.config import Tenant
from router.config.routing import Agent, Queue, capacity_of
from router.keys import Keys
from router.store import Store
from router.targets import compile_target


def agent_attributes(agent: Agent) -> dict[str, Any]:
    """What a target expression sees of an agent."""
    attributes: dict[str, Any] = dict(agent.attributes)
    attributes.update(id=agent.id, name=agent.name, skills=agent.skills, languages=agent.languages, level=agent.level)
    return attributes


def levels(queue: Queue) -> list[list[str]]:
    """The target expressions that select agents at each escalation level."""
    result = [[queue.target]]
    for step in queue.escalation:
        result.append(result[-1] + ([step.widen] if step.widen else []))
    return result


def members(queue: Queue, agents: list[Agent], level: int) -> dict[str, int]:
    """Agents a queue selects at a level, with their proficiency (queue skill level)."""
    predicates = [compile_target(expression) for expression in levels(queue)[level]]
    selected = {}
    for agent in agents:
        attributes = agent_attributes(agent)
        if any(predicate(attributes) for predicate in predicates):
            selected[agent.id] = agent.skills.get(queue.skill, 0) if queue.skill else agent.level
    return selected


def queue_settings(tenant: Tenant, queue: Queue) -> str:
    """The JSON the scripts read for a queue."""
    return json.dumps(
        {
            "strategy": queue.strategy,
            "sticky_seconds": queue.sticky_seconds,
            "reservation_timeout": queue.reservation_timeout
            if queue.reservation_timeout is not None
            else tenant.reservation_timeout,
            "sla_seconds": queue.sla.seconds,
            "sla_measure": queue.sla.measure,
            "breach_queue": queue.sla.breach_queue,
            "escalation": [
                {"after": s.after, "priority": s.priority, "widen": s.widen, "overflow": s.overflow}
                for s in queue.escalation
            ],
        }
    )


async def apply_tenant(store: Store, tenant: Tenant) -> None:
    """Write a tenant's queues and agents; runtime state (presence, load) is kept."""
    keys = Keys(tenant.id)
    agent_queues: dict[str, set[str]] = {agent.id: set() for agent in tenant.agents}
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.queues)
        for queue in tenant.queues:
            pipe.hset(keys.queues, queue.id, queue_settings(tenant, queue))
            for level in range(len(queue.escalation) + 1):
                selected = members(queue, tenant.agents, level)
                pipe.delete(keys.members(queue.id, level))
                if selected:
                    pipe.zadd(keys.members(queue.id, level), selected)
                for agent_id in selected:
                    agent_queues[agent_id].add(queue.id)
        for agent in tenant.agents:
            capacity = capacity_of(agent)
            pipe.sadd(keys.agents, agent.id)
            pipe.hset(
                keys.agent(agent.id),
                mapping={
                    "id": agent.id,
                    "name": agent.name or agent.id,
                    "exclusive_voice": int(tenant.calls_block_other_work),
                    **{f"cap:{c}": n for c, n in capacity.items()},
                },
            )
            for field in ("presence", "load:total", "idle_since", "last_offer", "missed"):
                pipe.hsetnx(keys.agent(agent.id), field, "offline" if field == "presence" else "0")
            pipe.delete(keys.agent_queues(agent.id))
            if agent_queues[agent.id]:
                pipe.sadd(keys.agent_queues(agent.id), *agent_queues[agent.id])
        await pipe.execute()
    # Capacities may have changed: let the presence script recompute readiness,
    # keeping whatever presence the agent has at that moment.
    for agent in tenant.agents:
        await atomic.presence(store, tenant.id, agent.id, presence="")
