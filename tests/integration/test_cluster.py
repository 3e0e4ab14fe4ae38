"""The same code on a 3-primary Redis Cluster: tenants on different shards are
routed, offered, answered and replied to, nothing lost or duplicated."""

from __future__ import annotations

import textwrap

import pytest

from channels import sandbox_senders
from channels.sandbox import outbox
from router import agents, bus, events
from router.app import processes
from router.config import parse_deployment
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from workers import routing
from workers.dispatch import Dispatcher

# slots 11304, 9341 and 1931: one tenant on each of the three primaries
TENANTS = ("acme", "stark", "wayne")

CONFIG = "".join(
    f"""
[[tenants]]
id = "{tenant}"

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
capacity = {{ sms = 50, total = 50 }}
"""
    for tenant in TENANTS
)


async def test_tenants_on_different_shards_are_routed_once_each(redis_cluster) -> None:
    deployment = parse_deployment(textwrap.dedent(CONFIG))
    settings = Settings(redis_url=redis_cluster.url, cluster=True, consumer="w1", block_ms=50)
    store = connect(settings)
    try:
        await store.redis.initialize()
        nodes = {store.redis.get_node_from_key(Keys(t).base).name for t in TENANTS}
        assert len(nodes) == 3, "one tenant on each shard"

        await processes.prepare(store, deployment)
        for tenant in deployment.tenants:
            await agents.set_presence(store, tenant, "amy", "available")
        contacts = [
            events.InboundContact(
                id=events.new_id(),
                tenant=tenant,
                channel="sms",
                address=f"+1555123{i:04d}",
                provider_id=f"SM{i}",
                occurred_at=events.now_ms(),
                body=f"hello {i}",
            )
            for i, tenant in enumerate(TENANTS * 10)
        ]
        for contact in contacts:
            assert (await bus.ingest(store, contact))[0]
        assert not (await bus.ingest(store, contacts[0]))[0]  # a retried webhook adds nothing

        consumer = routing.consumer(store, deployment, settings)
        await consumer.ensure_groups()
        read = 0
        for _ in range(10):
            for streams in consumer._read_sets():
                read += await consumer.read(streams)
        await consumer.flush_acks()
        assert read == len(contacts)

        for tenant in deployment.tenants:
            offers = await agents.offers(store, tenant, "amy")
            assert len(offers) == 10
            assert len({o["conv"] for o in offers}) == 10
            for offer in offers:
                await agents.accept(store, tenant, "amy", offer["reservation"])
            conversation = offers[0]["conv"]
            await agents.reply(store, tenant, "amy", conversation, "on it", idempotency_key="once")
            await agents.reply(store, tenant, "amy", conversation, "on it", idempotency_key="once")
            await agents.close(store, tenant, "amy", conversation, "resolved")

        dispatcher = Dispatcher(store, sandbox_senders(store))
        for tenant in TENANTS:
            rows = await store.redis.xrange(Keys(tenant).outbound)
            entries = [bus.Entry(Keys(tenant).outbound, i.decode(), f[b"e"]) for i, f in rows]
            assert len(entries) == 1  # the idempotent reply went out once
            await dispatcher.handle(entries)
            assert [m.body for _i, _p, m in await outbox(store, tenant)] == ["on it"]
            pending = await store.redis.xpending(Keys(tenant).inbound, "routing")
            assert pending["pending"] == 0
    finally:
        await store.redis.flushall(target_nodes="primaries")
        await store.close()


@pytest.mark.e2e  # a blocking read of its full length
async def test_a_live_feeds_blocking_read_on_an_idle_cluster_waits_without_timing_out(redis_cluster) -> None:
    """The inbox's and web chat's live feeds block 5 s on XREAD; the cluster client's read
    timeout must outlast that, or every idle feed logs a false "store unreachable"."""
    store = connect(Settings(redis_url=redis_cluster.url, cluster=True))
    try:
        stream = Keys("acme").events
        await store.redis.xadd(stream, {"e": b"x"})
        assert await store.redis.xread({stream: "$"}, block=5_500) in (None, [], {})
    finally:
        await store.redis.delete(Keys("acme").events)
        await store.close()
