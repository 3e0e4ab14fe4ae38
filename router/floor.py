"""The floor right now: per queue what waits and for how long, per agent their
state and load. The CLI's `status` prints it; the supervisors' view reads it."""

from __future__ import annotations

import msgspec

from router import events
from router.config import Tenant
from router.keys import Keys
from router.store import Store


class QueueState(msgspec.Struct, frozen=True):
    queue: str
    waiting: int
    oldest_wait_s: float  # of the conversation that has waited longest (its original age)
    by_channel: dict[str, int]


class AgentState(msgspec.Struct, frozen=True):
    agent: str
    presence: str
    reason: str
    load: dict[str, int]  # per channel, plus "total"
    capacity: dict[str, int]


async def queues(store: Store, tenant: Tenant) -> list[QueueState]:
    keys = Keys(tenant.id)
    now = events.now_ms()
    result = []
    for queue in tenant.queues:
        waiting = await store.redis.zcard(keys.waiting(queue.id))
        by_channel = {}
        for channel in queue.channels:
            count = await store.redis.zcard(keys.waiting_on(queue.id, channel))
            if count:
                by_channel[channel] = count
        oldest_s = 0.0
        if waiting:
            ids = await store.redis.zrange(keys.waiting(queue.id), 0, -1)
            async with store.redis.pipeline(transaction=False) as pipe:
                for conversation in ids:
                    pipe.hget(keys.conversation(conversation.decode()), "enqueued_at")
                ages = [int(a) for a in await pipe.execute() if a]
            oldest_s = (now - min(ages)) / 1000 if ages else 0.0
        result.append(QueueState(queue.id, waiting, round(oldest_s, 1), by_channel))
    return result


async def agents(store: Store, tenant: Tenant) -> list[AgentState]:
    keys = Keys(tenant.id)
    result = []
    for agent in tenant.agents:
        record = {k.decode(): v.decode() for k, v in (await store.redis.hgetall(keys.agent(agent.id))).items()}
        load = {k[5:]: int(v) for k, v in record.items() if k.startswith("load:") and int(v)}
        capacity = {k[4:]: int(v) for k, v in record.items() if k.startswith("cap:")}
        result.append(AgentState(agent.id, record.get("presence", "offline"), record.get("reason", ""), load, capacity))
    return result
