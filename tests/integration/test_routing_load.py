"""Three routing worker processes under load: every contact offered once, no agent overbooked,
the backlog served by priority then age.

The test plays the agents: it follows the tenants' events streams, accepts every
offer and closes it (no wrap-up), which frees the capacity the next offer takes.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, defaultdict

import pytest

from router import agents, bus, events, queues
from router.config import load_deployment
from router.config.routing import capacity_of
from router.keys import ROUTING_GROUP, Keys

pytestmark = pytest.mark.timeout(180)

BACKLOG = 1500  # arrive while every agent is offline
LIVE = 500  # arrive while agents work the backlog
CHANNELS = ("voice", "sms", "email", "webchat", "telegram")

# Capacity profiles, per channel and in total: a voice-and-chat agent, an email
# desk, a generalist, a one-at-a-time agent, and a text-only agent (no voice).
PROFILES = (
    "{ voice = 1, sms = 2, webchat = 2, telegram = 2, email = 1, total = 3 }",
    "{ voice = 1, sms = 1, webchat = 1, telegram = 1, email = 5, total = 5 }",
    "{ voice = 1, sms = 3, webchat = 3, telegram = 3, email = 3, total = 4 }",
    "{ voice = 1, sms = 1, webchat = 1, telegram = 1, email = 1, total = 1 }",
    "{ voice = 0, sms = 2, webchat = 3, telegram = 2, email = 2, total = 3 }",
)

# 3 tenants, 4 queues, 30 agents.
TENANTS = {
    "north": {"queues": {"care": "'care' in skills", "sales": "'sales' in skills"}, "agents": 12},
    "south": {"queues": {"help": "level >= 1"}, "agents": 10},
    "east": {"queues": {"desk": "'desk' in skills"}, "agents": 8},
}


def deployment_toml() -> str:
    lines = []
    for tenant, spec in TENANTS.items():
        first = next(iter(spec["queues"]))
        lines += [
            "[[tenants]]",
            f'id = "{tenant}"',
            "reservation_timeout = 600",  # nobody times out: the test answers every offer
            "wrapup_seconds = 0",
            f'entry = {{ default = "{first}" }}',
        ]
        for queue, target in spec["queues"].items():
            lines += ["[[tenants.queues]]", f'id = "{queue}"', f'target = "{target}"', "priority = 10"]
        for n in range(spec["agents"]):
            # In north, agents 0-3 work care, 4-7 sales, 8-11 both.
            skills = {"north": ["care"] if n < 4 else ["sales"] if n < 8 else ["care", "sales"]}.get(tenant, ["desk"])
            lines += [
                "[[tenants.agents]]",
                f'id = "{tenant}-{n:02d}"',
                "skills = { " + ", ".join(f"{s} = 1" for s in skills) + " }",
                f"capacity = {PROFILES[n % len(PROFILES)]}",
            ]
    return "\n".join(lines) + "\n"


async def together(coroutines, limit: int = 16) -> list:
    """Run coroutines concurrently, at most `limit` at once (a client's connection pool is finite)."""
    gate = asyncio.Semaphore(limit)

    async def one(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


def address(channel: str, n: int) -> str:
    if channel in ("voice", "sms"):
        return f"+1555{n:07d}"
    if channel == "email":
        return f"customer{n}@example.com"
    return f"{channel}-visitor-{n}"


def make_contacts(rng: random.Random, first: int, count: int, base_ms: int) -> list[events.InboundContact]:
    """Contacts with distinct customers, mixed channels, queues and priorities, in shuffled age order."""
    ages = list(range(count))
    rng.shuffle(ages)  # the order they reach the stream is not the order they started waiting
    contacts = []
    for i in range(count):
        n = first + i
        tenant = rng.choice(list(TENANTS))
        channel = rng.choice(CHANNELS)
        contacts.append(
            events.InboundContact(
                id=events.new_id(),
                tenant=tenant,
                channel=channel,
                address=address(channel, n),
                provider_id=f"P{n}",
                occurred_at=base_ms + ages[i] * 7,
                body=f"contact {n}",
                queue=rng.choice(list(TENANTS[tenant]["queues"])),
                priority=rng.choice([None, 0, 5, 20]),
            )
        )
    return contacts


async def test_three_routing_workers_offer_every_contact_once_within_capacity_by_priority_and_age(
    real_store, redis_url, write_config, workers, event_log, eventually, group
):
    store = real_store
    config = write_config(deployment_toml())
    deployment = load_deployment(config)
    for tenant in deployment.tenants:
        await queues.apply_tenant(store, tenant)
    tenants = {t.id: t for t in deployment.tenants}
    capacity = {(t.id, a.id): capacity_of(a) for t in deployment.tenants for a in t.agents}
    rng = random.Random(20240611)

    names = {f"routing-{n}" for n in range(1, 4)}
    for name in sorted(names):
        workers.start("routing", name, config, batch=50, block_ms=200)
    await eventually(lambda: workers.reading(store, names), "three routing workers started and reading")

    # Phase 1: a backlog forms while every agent is offline.
    base_ms = events.now_ms() - 3_600_000
    backlog = make_contacts(rng, 0, BACKLOG, base_ms)
    live = make_contacts(rng, BACKLOG, LIVE, base_ms + 10_000_000)
    by_id = {c.id: c for c in [*backlog, *live]}
    await together(bus.ingest(store, c) for c in backlog)
    log = event_log(list(tenants))

    async def backlog_queued() -> bool:
        workers.check_alive()
        await log.poll()
        return len(log.of(events.Queued)) == BACKLOG

    await eventually(backlog_queued, f"{BACKLOG} backlog contacts queued by the workers")
    assert not log.of(events.Reserved), "nobody is available, yet a contact was offered"

    # Phase 2: every agent comes online while more contacts keep arriving.
    async def arrive_live() -> None:
        for chunk in range(0, LIVE, 25):
            await together(bus.ingest(store, c) for c in live[chunk : chunk + 25])
            await asyncio.sleep(0.02)

    arrivals = asyncio.create_task(arrive_live())
    await together(agents.set_presence(store, t, a.id, "available") for t in deployment.tenants for a in t.agents)

    outstanding: dict[tuple[str, str], Counter] = defaultdict(Counter)  # per agent, per channel and "total"
    reserved: Counter = Counter()
    saturated: Counter = Counter()  # offers that filled an agent's channel or total capacity
    held: list[events.Reserved] = []  # accepted, not closed yet
    total = BACKLOG + LIVE

    def track(event: events.StateEvent) -> None:
        """Capacity in stream order: an offer takes a slot, the end of wrap-up gives it back."""
        if isinstance(event, events.Reserved):
            reserved[event.conversation] += 1
            load = outstanding[(event.tenant, event.agent)]
            load[event.channel] += 1
            load["total"] += 1
            cap = capacity[(event.tenant, event.agent)]
            assert load[event.channel] <= cap[event.channel], f"{event.agent} over {event.channel} capacity: {event}"
            assert load["total"] <= cap["total"], f"{event.agent} over total capacity: {event}"
            saturated[event.channel if load[event.channel] == cap[event.channel] else "total"] += (
                load["total"] == cap["total"] or load[event.channel] == cap[event.channel]
            )
        elif isinstance(event, events.WrappedUp):
            load = outstanding[(event.tenant, event.agent)]
            load[event.channel] -= 1
            load["total"] -= 1
        elif isinstance(event, events.Rejected | events.TimedOut):
            pytest.fail(f"no offer is rejected or times out in this test, yet: {event}")

    async def check_agent_hashes() -> None:
        async with store.redis.pipeline(transaction=False) as pipe:
            for tenant, agent in capacity:
                pipe.hgetall(Keys(tenant).agent(agent))
            rows = await pipe.execute()
        for (tenant, agent), row in zip(capacity, rows, strict=True):
            record = {k.decode(): int(v) for k, v in row.items() if k.startswith((b"load:", b"cap:"))}
            for channel in (*CHANNELS, "total"):
                assert record.get(f"load:{channel}", 0) <= record[f"cap:{channel}"], f"{tenant}/{agent}: {record}"
                assert record.get(f"load:{channel}", 0) >= 0, f"{tenant}/{agent}: {record}"

    async def answer(event: events.Reserved) -> None:
        await agents.accept(store, tenants[event.tenant], event.agent, event.reservation)

    async def close(event: events.Reserved) -> None:
        await agents.close(store, tenants[event.tenant], event.agent, event.conversation, "resolved")

    async def all_served() -> bool:
        workers.check_alive()
        fresh = await log.poll(block_ms=20)
        offers = []
        for event in fresh:
            track(event)
            if isinstance(event, events.Reserved):
                offers.append(event)
        await together(answer(e) for e in offers)
        # Agents finish some of their work at random, so they often sit at capacity.
        rng.shuffle(held)
        finishing = held[: (len(held) + 1) // 2]
        del held[: len(finishing)]
        await together(close(e) for e in finishing)
        held.extend(offers)
        await check_agent_hashes()
        if arrivals.done() and arrivals.exception():
            raise arrivals.exception()
        progress.update(offered=len(reserved), holding=len(held), arrived=len(log.of(events.Queued)))
        return arrivals.done() and len(reserved) == total and not held

    progress: dict[str, int] = {}
    try:
        await eventually(all_served, f"all {total} contacts offered and closed", deadline_s=120, every_s=0.01)
    except BaseException:
        arrivals.cancel()
        waiting = {
            (t.id, q.id): await store.redis.zcard(Keys(t.id).waiting(q.id))
            for t in deployment.tenants
            for q in t.queues
        }
        print("progress", progress, "waiting", waiting)
        raise
    await arrivals
    while fresh := await log.poll(block_ms=100):  # the last closes' events
        for event in fresh:
            track(event)

    # Every contact became its own conversation, queued once and offered exactly once.
    contact_of = {e.conversation: e.message for e in log.of(events.MessageAdded) if e.direction == "in"}
    assert sorted(contact_of.values()) == sorted(by_id), "every contact joins exactly one conversation"
    assert Counter(e.conversation for e in log.of(events.Queued)) == Counter(set(contact_of))
    assert set(reserved) == set(contact_of)
    assert set(reserved.values()) == {1}, [c for c, n in reserved.items() if n > 1][:5]
    assert len(log.of(events.Accepted)) == total
    assert all(load[k] == 0 for load in outstanding.values() for k in load), "all capacity given back"
    print("offers that filled a capacity:", dict(saturated))
    assert saturated.total() > total / 4, "agents were rarely full: the capacity checks above prove little"

    # The agents' records agree: nobody holds a slot and no queue has anyone waiting.
    for tenant in deployment.tenants:
        keys = Keys(tenant.id)
        for agent in tenant.agents:
            record = await store.redis.hgetall(keys.agent(agent.id))
            loads = {k.decode(): int(v) for k, v in record.items() if k.startswith(b"load:")}
            assert set(loads.values()) <= {0}, f"{agent.id}: {loads}"
            assert not await store.redis.scard(keys.agent_work(agent.id))
        for queue in tenant.queues:
            assert not await store.redis.zcard(keys.waiting(queue.id))
    assert await group.pending(store, deployment) == 0
    took_part = {
        row["name"].decode()
        for t in deployment.tenants
        for row in await store.redis.xinfo_consumers(Keys(t.id).inbound, ROUTING_GROUP)
    }
    assert names <= took_part, f"every routing worker took a share of the contacts: {took_part}"
    assert not workers.errors(), workers.errors()

    # The backlog was served by priority, then age, within each queue and channel.
    order: dict[tuple[str, str, str], list[tuple[int, int, str]]] = defaultdict(list)
    backlog_ids = {c.id for c in backlog}
    for event in log.of(events.Reserved):
        contact = by_id[contact_of[event.conversation]]
        if contact.id in backlog_ids:
            priority = contact.priority if contact.priority is not None else 10
            order[(event.tenant, event.queue, event.channel)].append((-priority, contact.occurred_at, contact.id))
    assert len(order) == 4 * len(CHANNELS), sorted(order)
    for key, served in order.items():
        out_of_order = [(a, b) for a, b in itertools.pairwise(served) if b[:2] < a[:2]]
        assert not out_of_order, f"{key}: served before an older or more urgent contact: {out_of_order[:3]}"
