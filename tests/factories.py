"""Small factories for the unit tests: a deployment from a short TOML string,
applied to a fresh embedded store, and contacts that arrive through intake.

Each test builds its own world (a new in-memory store), so tests never share
state and read top to bottom as a specification.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from router import agents, bus, conversations, events, intake, queues, timers
from router.config import Deployment, Tenant, parse_deployment, resolve_secrets
from router.keys import ROUTING_GROUP, Keys
from router.settings import Settings
from router.store import Store, connect, text

# One tenant, one support queue, two support agents: the default world.
SUPPORT = """
[[tenants]]
id = "acme"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }

[[tenants.agents]]
id = "zoe"
skills = { support = 1 }
"""


# The terms an agent gives when closing as promise_to_pay (required by agents.close).
PROMISE = {"promise_amount": "120.50", "promise_date": "2099-01-31"}


def deployment(text: str) -> Deployment:
    """A deployment from a TOML snippet, checked as a real configuration file is."""
    return parse_deployment(textwrap.dedent(text), "test.toml")


def contact(
    tenant: str = "acme",
    *,
    channel: str = "sms",
    address: str = "+15551230000",
    body: str = "hello",
    ago: float = 0.0,
    **fields,
) -> events.InboundContact:
    """An inbound contact as an adapter would normalise it; `ago` seconds old."""
    values = dict(
        id=events.new_id(),
        tenant=tenant,
        channel=channel,
        address=address,
        provider_id=events.new_id(),
        occurred_at=events.now_ms() - int(ago * 1000),
        body=body,
    )
    values.update(fields)
    return events.build(events.InboundContact, values)


def outbound(
    tenant: str = "acme", *, channel: str = "sms", to: str = "+15551230000", **fields
) -> events.OutboundMessage:
    values = dict(id=events.new_id(), tenant=tenant, channel=channel, to=to, occurred_at=events.now_ms(), body="hi")
    values.update(fields)
    return events.build(events.OutboundMessage, values)


@dataclass
class World:
    """A store with a deployment applied, and the verbs tests use on it."""

    store: Store
    deployment: Deployment

    @property
    def tenant(self) -> Tenant:
        return self.deployment.tenants[0]

    @property
    def keys(self) -> Keys:
        return Keys(self.tenant.id)

    async def available(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            await agents.set_presence(self.store, self.tenant, agent_id, "available")

    async def arrive(self, **fields) -> str:
        """A contact goes through intake (and routing); returns its conversation id."""
        return await self.deliver(contact(self.tenant.id, **fields))

    async def deliver(self, item: events.InboundContact) -> str:
        """The contact arrives on its inbound stream and a routing worker takes it
        (with whatever else arrived there unrouted); returns its conversation id."""
        entries = await inbound_entries(self.store, [item])
        assert await route_entries(self.store, self.deployment, entries) == set(entries)
        for event in reversed(await self.events(events.MessageAdded, tenant=item.tenant)):
            if event.message == item.id:
                return event.conversation
        raise AssertionError(f"contact {item.id} joined no conversation")

    async def events(self, *kinds: type, tenant: str = "") -> list:
        """A tenant's state events, oldest first, optionally only of some types."""
        rows = await self.store.redis.xrange(Keys(tenant or self.tenant.id).events)
        decoded = [events.decode_state(fields[b"e"], text(entry_id)) for entry_id, fields in rows]
        return [e for e in decoded if not kinds or isinstance(e, kinds)]

    async def outgoing(self) -> list[events.OutboundMessage]:
        """The messages on the tenant's outbound stream for the dispatcher, oldest first."""
        rows = await self.store.redis.xrange(self.keys.outbound)
        return [events.decode_outbound(fields[b"e"]) for _id, fields in rows]

    async def conversation(self, conversation_id: str) -> dict[str, str]:
        """Its fields as the product reads them (conversations.complete), or {} if there is none."""
        record = await self.store.redis.hgetall(self.keys.conversation(conversation_id))
        fields = {text(k): text(v) for k, v in record.items()}
        return conversations.complete(conversation_id, fields) if fields else {}

    async def agent(self, agent_id: str) -> dict[str, str]:
        return await agents.status(self.store, self.tenant, agent_id)

    async def offers(self, agent_id: str) -> list[dict[str, str]]:
        return await agents.offers(self.store, self.tenant, agent_id)

    async def offered(self, agent_id: str) -> list[str]:
        """The conversations offered to an agent and not yet answered."""
        return [offer["conv"] for offer in await self.offers(agent_id)]

    async def accept_offer(self, agent_id: str) -> str:
        """The agent accepts their one pending offer; returns the conversation."""
        [offer] = await self.offers(agent_id)
        await agents.accept(self.store, self.tenant, agent_id, offer["reservation"])
        return offer["conv"]

    async def assigned_to(self, agent_id: str, **fields) -> str:
        """The agent is available, a contact arrives and the agent accepts its offer;
        returns the contact's conversation."""
        await self.available(agent_id)
        conversation = await self.arrive(**fields)
        await self.accept_offer(agent_id)
        return conversation

    async def waiting(self, queue: str) -> list[str]:
        """A queue's waiting conversations, best first (checked against the per-channel sets)."""
        whole = [text(c) for c in await self.store.redis.zrange(self.keys.waiting(queue), 0, -1)]
        by_channel = set()
        for channel in events.CHANNELS:
            on_channel = [text(c) for c in await self.store.redis.zrange(self.keys.waiting_on(queue, channel), 0, -1)]
            assert [c for c in whole if c in on_channel] == on_channel, f"{queue}/{channel} out of order"
            by_channel.update(on_channel)
        assert by_channel == set(whole), f"{queue}: per-channel waiting sets disagree with the queue"
        return whole

    async def ready(self, channel: str) -> list[str]:
        return [text(a) for a in await self.store.redis.zrange(self.keys.ready(channel), 0, -1)]

    async def timers(self, prefix: str = "") -> dict[str, int]:
        rows = await self.store.redis.zrange(self.keys.timers, 0, -1, withscores=True)
        return {text(member): int(score) for member, score in rows if text(member).startswith(prefix)}

    async def fire(self, prefix: str) -> int:
        """Make the timers whose name starts with prefix due now, and run the timers."""
        pending = await self.timers(prefix)
        assert pending, f"no {prefix!r} timer is scheduled"
        await self.store.redis.zadd(self.keys.timers, dict.fromkeys(pending, 0))
        return await timers.run_due(self.store, self.tenant)


async def world(text: str = SUPPORT, env: dict[str, str] | None = None, store: Store | None = None) -> World:
    """A fresh embedded store (or `store`, a real one) with the deployment's tenants
    applied; given `env`, their provider secrets are read from it, as the processes do
    at start-up."""
    config = deployment(text)
    if env is not None:
        config = resolve_secrets(config, env)
    store = store or connect(Settings())
    for tenant in config.tenants:
        await queues.apply_tenant(store, tenant)
    return World(store, config)


def history_bodies(entries: list[events.HistoryEntry]) -> list[tuple[str, str]]:
    return [(entry.kind, entry.body) for entry in entries]


ROUTING_CONSUMER = "tests"  # the routing worker the tests play


async def read_inbound(store: Store, *tenants: str) -> list[bus.Entry]:
    """The entries of the tenants' inbound streams the routing group has not handed
    out yet, read now as ROUTING_CONSUMER (pending, theirs, until intake stores them)."""
    streams = [Keys(t).inbound for t in tenants]
    for stream in streams:
        await bus.ensure_group(store, stream, ROUTING_GROUP)
    reply = await store.redis.xreadgroup(ROUTING_GROUP, ROUTING_CONSUMER, {s: ">" for s in streams})
    return [bus.Entry(text(s), text(i), f[b"e"]) for s, rows in reply or [] for i, f in rows if f]


async def inbound_entries(store: Store, items: list[events.InboundContact]) -> list[bus.Entry]:
    """Contacts put on their tenants' inbound streams, then every entry unread there,
    read as the routing worker reads them."""
    if not items:
        return []
    for item in items:
        await store.redis.xadd(Keys(item.tenant).inbound, {"e": events.encode(item)})
    return await read_inbound(store, *dict.fromkeys(item.tenant for item in items))


async def route_entries(
    store: Store, deployment: Deployment, entries: list[bus.Entry], dead_letter=None
) -> set[bus.Entry]:
    """What the routing worker does with entries it read; returns those done. An
    entry dead-lettered fails the test unless `dead_letter` is given."""

    async def refuse(_entry: bus.Entry, reason: str) -> None:
        raise AssertionError(reason)

    return (await intake.route_batch(store, deployment, entries, dead_letter or refuse, ROUTING_CONSUMER)).done


async def route_inbound(store: Store, deployment: Deployment, *tenants: str, dead_letter=None) -> set[bus.Entry]:
    """What the routing worker does with what arrived on the tenants' inbound streams."""
    return await route_entries(store, deployment, await read_inbound(store, *tenants), dead_letter)
