"""Routing as a state machine: Hypothesis drives random sequences of what happens on a
contact centre floor (contacts arrive, agents come and go, offers are accepted, rejected
or time out, conversations are closed and transferred) through the same functions the
web inbox, the CLI and the workers call, and after every step reads the store to check
what routing promises whatever the order:

- no agent holds more than their capacity, per channel and in total, and their load is
  exactly the conversations they hold;
- a conversation has at most one pending offer (one reservation timer, one agent);
- a waiting conversation is in its queue's waiting set and in exactly one per-channel
  waiting set (its channel's, of its queue); nothing else is waiting anywhere.

Time does not pass on its own: an offer times out, or a decline window ends, when a rule
makes that timer due and runs the timers as the timers worker does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from router import agents, events, timers
from router.agents import AgentError
from router.config import Tenant
from router.config.routing import capacity_of
from router.keys import Keys
from router.store import text
from tests.factories import World, contact, world

# Two tenants (the same agent id in both), queues that target different skills, agents
# with different capacities per channel (a zero among them) and a small total.
FLOOR = """
[[tenants]]
id = "acme"
entry = { default = "support" }
max_missed_offers = 2

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }
capacity = { voice = 1, sms = 2, email = 2, webchat = 1, total = 3 }

[[tenants.agents]]
id = "bob"
skills = { support = 1, billing = 1 }
capacity = { sms = 1, email = 1, webchat = 0, total = 2 }

[[tenants.agents]]
id = "cat"
skills = { billing = 1 }
capacity = { voice = 1, sms = 3, total = 1 }

[[tenants]]
id = "globex"
entry = { default = "sales" }

[[tenants.queues]]
id = "sales"

[[tenants.agents]]
id = "amy"
capacity = { sms = 1, email = 1, total = 2 }

[[tenants.agents]]
id = "dan"
"""

CHANNELS = ("sms", "email", "webchat", "voice")
ADDRESSES = {
    "sms": ["+15550000001", "+15550000002", "+15550000003"],
    "voice": ["+15550000001", "+15550000004"],
    "email": ["ann@example.com", "ben@example.com"],
    "webchat": ["visitor-1", "visitor-2"],
}
TENANTS = ("acme", "globex")

T = TypeVar("T")

pick = st.integers(min_value=0, max_value=50)  # an index into whatever the store holds now


@dataclass
class Conversation:
    tenant: str
    id: str
    state: str
    agent: str
    queue: str
    channel: str
    reservation: str


@dataclass
class Agent:
    record: dict[str, str]  # its hash: presence, load:<channel>, load:total...
    holds: set[str]  # its work set: the conversations taking its capacity


@dataclass
class Floor:
    """What the store holds now, read (one pipeline per tenant) after every step: the rules
    choose from it and the invariants check it."""

    conversations: list[Conversation] = field(default_factory=list)
    agents: dict[tuple[str, str], Agent] = field(default_factory=dict)  # by (tenant, agent)
    timers: dict[str, list[str]] = field(default_factory=dict)  # by tenant: their members
    waiting: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # by tenant: waiting key -> members

    def in_state(self, state: str) -> list[Conversation]:
        return [c for c in self.conversations if c.state == state]

    @property
    def declined(self) -> list[tuple[str, str]]:
        """(tenant, timer) of the decline windows and sticky holds not over yet."""
        return [(t, m) for t, members in self.timers.items() for m in members if m.startswith(("route:", "hold:"))]


class RoutingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.world: World = self.run(world(FLOOR))
        self.opened: dict[str, set[str]] = {t: set() for t in TENANTS}  # conversation ids, by tenant
        self.floor = Floor()
        for tenant in self.world.deployment.tenants:  # the shift starts with everyone at their desk
            for agent in tenant.agents:
                self.step(agents.set_presence(self.world.store, tenant, agent.id, "available"))

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def teardown(self) -> None:
        self.run(self.world.store.close())
        self.loop.close()

    def tenant(self, tenant_id: str) -> Tenant:
        return self.world.deployment.tenant(tenant_id)

    @property
    def redis(self) -> Any:
        return self.world.store.redis

    async def _read_floor(self) -> Floor:
        floor = Floor()
        for tenant in self.world.deployment.tenants:
            keys = Keys(tenant.id)
            opened = sorted(self.opened[tenant.id])
            waiting_keys = sorted(text(k) for k in await self.redis.keys(f"{keys.base}:q:*:wait*"))
            pipe = self.redis.pipeline(transaction=False)
            for conv in opened:
                pipe.hmget(keys.conversation(conv), ["state", "agent", "queue", "channel", "reservation"])
            for agent in tenant.agents:
                pipe.hgetall(keys.agent(agent.id))
                pipe.smembers(keys.agent_work(agent.id))
            pipe.zrange(keys.timers, 0, -1)
            for key in waiting_keys:
                pipe.zrange(key, 0, -1)
            replies = iter(await pipe.execute())
            for conv in opened:
                fields = (text(f) if f is not None else "" for f in next(replies))
                floor.conversations.append(Conversation(tenant.id, conv, *fields))
            for agent in tenant.agents:
                record = {text(k): text(v) for k, v in next(replies).items()}
                floor.agents[tenant.id, agent.id] = Agent(record, {text(c) for c in next(replies)})
            floor.timers[tenant.id] = [text(m) for m in next(replies)]
            floor.waiting[tenant.id] = {key: [text(m) for m in next(replies)] for key in waiting_keys}
        return floor

    def step(self, awaitable: Awaitable[object]) -> None:
        """Run one action on the store, then read the floor the next rule chooses from."""
        self.run(awaitable)
        self.floor = self.run(self._read_floor())

    async def _fire(self, tenant: Tenant, members: list[str]) -> int:
        """Make the named timers due now and run the tenant's timers, as the timers worker does."""
        await self.redis.zadd(Keys(tenant.id).timers, dict.fromkeys(members, 0))
        return await timers.run_due(self.world.store, tenant)

    # --- what happens on the floor ---

    @rule(
        tenant=st.sampled_from(TENANTS),
        channel=st.sampled_from(CHANNELS),
        who=pick,
        queue=st.sampled_from(["", "support", "billing", "sales"]),
    )
    def arrive(self, tenant: str, channel: str, who: int, queue: str) -> None:
        """A customer writes or calls (maybe again, joining their open conversation)."""
        addresses = ADDRESSES[channel]
        item = contact(tenant, channel=channel, address=addresses[who % len(addresses)], queue=queue)

        async def deliver() -> None:
            self.opened[tenant].add(await self.world.deliver(item))

        self.step(deliver())

    @rule(tenant=st.sampled_from(TENANTS), who=pick, presence=st.sampled_from(["available", "away", "offline"]))
    def presence(self, tenant: str, who: int, presence: str) -> None:
        """An agent goes available (and is offered waiting work), or steps away (handing back offers)."""
        config = self.tenant(tenant)
        agent = config.agents[who % len(config.agents)].id
        self.step(agents.set_presence(self.world.store, config, agent, presence))

    @precondition(lambda self: self.floor.in_state("reserved"))
    @rule(which=pick)
    def accept(self, which: int) -> None:
        offers = self.floor.in_state("reserved")
        offer = offers[which % len(offers)]
        self.step(agents.accept(self.world.store, self.tenant(offer.tenant), offer.agent, offer.reservation))

    @precondition(lambda self: self.floor.in_state("reserved"))
    @rule(which=pick)
    def reject(self, which: int) -> None:
        offers = self.floor.in_state("reserved")
        offer = offers[which % len(offers)]
        self.step(agents.reject(self.world.store, self.tenant(offer.tenant), offer.agent, offer.reservation))

    @precondition(lambda self: self.floor.in_state("reserved"))
    @rule(which=pick)
    def timeout(self, which: int) -> None:
        """An offer nobody answered runs out: its reservation timer fires through the timers path."""
        offers = self.floor.in_state("reserved")
        offer = offers[which % len(offers)]

        async def expire() -> None:
            assert await self._fire(self.tenant(offer.tenant), [f"res:{offer.reservation}"]) >= 1

        self.step(expire())

    @precondition(lambda self: self.floor.declined)
    @rule(which=pick)
    def decline_window_ends(self, which: int) -> None:
        """Agents who declined a conversation may be offered it again (its route: timer fires)."""
        tenant, member = self.floor.declined[which % len(self.floor.declined)]
        self.step(self._fire(self.tenant(tenant), [member]))

    @precondition(lambda self: self.floor.in_state("assigned"))
    @rule(which=pick)
    def close(self, which: int) -> None:
        held = self.floor.in_state("assigned")
        conv = held[which % len(held)]
        self.step(agents.close(self.world.store, self.tenant(conv.tenant), conv.agent, conv.id, "resolved"))

    @precondition(lambda self: self.floor.in_state("assigned"))
    @rule(which=pick, to=pick)
    def transfer_to_queue(self, which: int, to: int) -> None:
        held = self.floor.in_state("assigned")
        conv = held[which % len(held)]
        config = self.tenant(conv.tenant)
        queue = config.queues[to % len(config.queues)].id

        async def hand_over() -> None:
            assert await agents.transfer(self.world.store, config, conv.agent, conv.id, to_queue=queue) == "queued"

        self.step(hand_over())

    @precondition(lambda self: self.floor.in_state("assigned"))
    @rule(which=pick, to=pick)
    def transfer_to_agent(self, which: int, to: int) -> None:
        """To a colleague (or back to themselves), refused when they have no room on its channel."""
        held = self.floor.in_state("assigned")
        conv = held[which % len(held)]
        config = self.tenant(conv.tenant)
        colleague = config.agents[to % len(config.agents)].id

        async def hand_over() -> None:
            try:
                await agents.transfer(self.world.store, config, conv.agent, conv.id, to_agent=colleague)
            except AgentError as refused:
                assert "agent unavailable" in str(refused), refused

        self.step(hand_over())

    # --- what must hold after every step, read from the store ---

    @invariant()
    def load_within_capacity(self) -> None:
        channel_of = {(c.tenant, c.id): c.channel for c in self.floor.conversations}
        for tenant in self.world.deployment.tenants:
            for agent in tenant.agents:
                capacity = capacity_of(agent)
                state = self.floor.agents[tenant.id, agent.id]
                who = f"{tenant.id}:{agent.id}"
                total = int(state.record.get("load:total", 0))
                assert 0 <= total <= capacity["total"], f"{who} holds {total} of {capacity['total']} in total"
                assert total == len(state.holds), f"{who}: load {total} but holds {sorted(state.holds)}"
                for channel in events.CHANNELS:
                    load = int(state.record.get(f"load:{channel}", 0))
                    assert 0 <= load <= capacity[channel], f"{who} holds {load} of {capacity[channel]} on {channel}"
                    on_channel = sorted(c for c in state.holds if channel_of.get((tenant.id, c)) == channel)
                    assert load == len(on_channel), f"{who}: {channel} load {load} but holds {on_channel}"

    @invariant()
    def one_pending_offer_at_most(self) -> None:
        for tenant in self.world.deployment.tenants:
            reservations = [m[len("res:") :] for m in self.floor.timers[tenant.id] if m.startswith("res:")]
            holders: dict[str, list[str]] = {}
            for agent in tenant.agents:
                for conv in self.floor.agents[tenant.id, agent.id].holds:
                    holders.setdefault(conv, []).append(agent.id)
            for conv in self.floor.conversations:
                if conv.tenant != tenant.id:
                    continue
                pending = [r for r in reservations if r.rpartition(".")[0] == conv.id]
                assert len(pending) <= 1, f"{conv.id} has {len(pending)} pending offers: {pending}"
                assert len(holders.get(conv.id, [])) <= 1, f"{conv.id} held by {holders[conv.id]}"
                if conv.state == "reserved":
                    assert pending == [conv.reservation], f"{conv.id} offered as {conv.reservation}, timers {pending}"
                    assert holders.get(conv.id) == [conv.agent], f"{conv.id} offered to {conv.agent}"
                else:
                    assert pending == [], f"{conv.id} is {conv.state} with a pending offer {pending}"
                if conv.state in ("queued", "closed"):
                    assert conv.id not in holders, f"{conv.id} is {conv.state} but {holders[conv.id]} holds it"

    @invariant()
    def waiting_in_exactly_one_set_per_channel(self) -> None:
        for tenant in self.world.deployment.tenants:
            base = f"{Keys(tenant.id).base}:q:"
            whole: dict[str, list[str]] = {}  # conversation -> the queues whose waiting set holds it
            by_channel: dict[str, list[str]] = {}  # conversation -> the per-channel sets holding it
            for key, members in self.floor.waiting[tenant.id].items():
                queue, _, channel = key[len(base) :].partition(":wait")
                for conv in members:
                    if channel:
                        by_channel.setdefault(conv, []).append(f"{queue}/{channel.lstrip(':')}")
                    else:
                        whole.setdefault(conv, []).append(queue)
            for conv in self.floor.conversations:
                if conv.tenant == tenant.id and conv.state == "queued":
                    assert whole.pop(conv.id, []) == [conv.queue], f"{conv.id} waits in queue {conv.queue} only"
                    sets = by_channel.pop(conv.id, [])
                    assert sets == [f"{conv.queue}/{conv.channel}"], f"{conv.id} ({conv.channel}) waits in {sets}"
            assert not whole, f"waiting but not queued: {whole}"
            assert not by_channel, f"waiting on a channel but not queued: {by_channel}"


RoutingMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same sequences on every run: CI never meets a new one by chance
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Passing takes seconds. A failure is shrunk to its few steps before it is reported, which
# can take Hypothesis minutes (it stops shrinking after five): room for that, so the
# report is the short sequence rather than a timeout.
TestRoutingMachine = pytest.mark.timeout(600)(RoutingMachine.TestCase)
