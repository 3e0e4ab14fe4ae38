"""The agents of a fault drill: each accepts what it is offered, replies once to
the conversation and closes it, through `router.agents` as the inbox does.

They act on state, not on events: each polls its own work, so an action whose
answer was lost (Redis restarting, a dropped connection) is simply seen again and
done again. A reply carries an idempotency key per conversation, as the inbox's
form does, so doing it again sends nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from router import agents
from router.config import Deployment, Tenant
from router.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.1
PRESENCE_EVERY_S = 2.0


@dataclass
class Agents:
    store: Store
    deployment: Deployment
    rng: random.Random
    replies: dict[str, str] = field(default_factory=dict)  # conversation -> reply message id, once confirmed
    accepted: int = 0
    closed: int = 0
    errors: Counter = field(default_factory=Counter)  # failed actions by exception type; each was tried again

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            *(self._agent(tenant, agent.id, stop) for tenant in self.deployment.tenants for agent in tenant.agents)
        )

    async def idle(self) -> bool:
        """Whether no agent holds any work (offers, conversations): the drill is drained."""
        for tenant in self.deployment.tenants:
            for agent in tenant.agents:
                if await agents.work(self.store, tenant, agent.id):
                    return False
        return True

    async def _agent(self, tenant: Tenant, agent: str, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.random() * POLL_S)  # spread the agents' polls
        loop = asyncio.get_running_loop()
        presence_checked = -PRESENCE_EVERY_S
        while not stop.is_set():
            try:
                if loop.time() - presence_checked > PRESENCE_EVERY_S:
                    presence_checked = loop.time()
                    # An agent who missed offers while Redis was away is set away by the
                    # router; this one is at the desk, so it comes back.
                    if (await agents.status(self.store, tenant, agent)).get("presence") != "available":
                        await agents.set_presence(self.store, tenant, agent, "available")
                for record in await agents.work(self.store, tenant, agent):
                    await self._act(tenant, agent, record)
            except (RedisError, OSError) as exc:
                self.errors[type(exc).__name__] += 1
                log.debug("agent %s/%s: %s; trying again", tenant.id, agent, exc)
            except Exception as exc:  # not a Redis outage: worth reading, but this agent stays at work
                self.errors[type(exc).__name__] += 1
                log.warning("agent %s/%s failed an action: %r; trying again", tenant.id, agent, exc)
            await asyncio.sleep(POLL_S)

    async def _act(self, tenant: Tenant, agent: str, record: dict[str, str]) -> None:
        if record.get("agent") != agent:
            return
        conversation = record["id"]
        try:
            if record.get("state") == "reserved":
                await agents.accept(self.store, tenant, agent, record["reservation"])
                self.accepted += 1
            elif record.get("state") == "assigned":
                message = await agents.reply(
                    self.store, tenant, agent, conversation, "Thanks, we are on it.", idempotency_key="drill"
                )
                self.replies[conversation] = message.id
                await agents.close(self.store, tenant, agent, conversation, "resolved")
                self.closed += 1
        except agents.AgentError:
            pass  # the offer timed out or moved on meanwhile: the next poll sees where it is
