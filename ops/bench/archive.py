"""Archive benchmark: Redis memory per closed conversation before and after the archive
evicts it, and what the same conversation costs in PostgreSQL.

    python -m ops.bench archive [--contacts 1200] [--agents 20] [--json]

It starts its own redis-server and PostgreSQL (from the installed server binaries) and
runs the issue's drill in this process, through the product's own code: N SMS contacts
arrive (router.bus.ingest, as a webhook would add them), a routing consumer routes them,
agents accept each offer, answer once and close; the dispatcher sends each reply (the
sandbox outbox); the archive consumer writes the events into PostgreSQL; every stream is
trimmed (`contactrouter trim`). Then it measures Redis's used_memory (less what it held
before the first contact), and what the tenant's keys themselves take (MEMORY USAGE):
that is what each closed conversation costs Redis today. The archive then evicts them
(the clock moved past the hot window) and it measures again. What is left is each
customer's record and address (kept: they route the customer's next contact).

`after` counts everything still in Redis, including the de-duplication markers of each
contact and reply, which expire by themselves (their TTL is at most the hot window's 7
days); `after_markers_expired` is the same once they have. ratio = after / before.
This is a measurement, not a test: nothing asserts on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg

from ops import streams
from ops.postgres_server import PostgresServer
from ops.redis_server import RedisServer
from router import agents, bus, events
from router.config import Deployment, parse_deployment
from router.keys import DISPATCH_GROUP, Keys
from router.records import migrate
from router.records.archive import Archive
from router.settings import Settings
from router.store import Store, connect, text
from workers import archive, routing
from workers.dispatch import Dispatcher

TENANT = "bench"
DAY_MS = 86_400_000
HOT_DAYS = 7.0


def deployment_toml(agent_count: int) -> str:
    head = f'[[tenants]]\nid = "{TENANT}"\nwrapup_seconds = 0\nentry = {{ default = "desk" }}\n'
    head += '[[tenants.queues]]\nid = "desk"\n'
    agents_part = "".join(
        f'[[tenants.agents]]\nid = "a{n}"\ncapacity = {{ sms = 5, total = 5 }}\n' for n in range(agent_count)
    )
    return head + agents_part


async def used_memory(store: Store) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


async def key_bytes(store: Store) -> int:
    """What the tenant's keys themselves take (MEMORY USAGE, every element counted)."""
    total = 0
    async for key in store.redis.scan_iter(match=f"{Keys(TENANT).base}:*", count=1000):
        total += int(await store.redis.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
    return total


def address_of(n: int) -> str:
    return f"+1212555{n:04d}"


def body_of(n: int) -> str:
    return f"Hello, this is customer {n}: my meter reading looks wrong this month."


async def drill(
    store: Store,
    deployment,
    contacts: int,
    *,
    first: int = 0,
    address: Callable[[int], str] = address_of,
    body: Callable[[int], str] = body_of,
) -> int:
    """N SMS contacts, each routed, accepted, answered once, closed and its reply sent; returns how many closed.
    The contacts are numbers first.. (their provider ids too); `address` and `body` give the n-th's
    (addresses distinct within one drill)."""
    tenant = deployment.tenants[0]
    keys = Keys(TENANT)
    settings = Settings(consumer="bench", batch=100, block_ms=10)
    router = routing.consumer(store, deployment, settings)
    await router.ensure_groups()
    dispatcher = bus.Consumer(
        store, DISPATCH_GROUP, "bench", [keys.outbound], Dispatcher(store).handle, batch=100, block_ms=10
    )
    await dispatcher.ensure_groups()
    for agent in tenant.agents:
        await agents.set_presence(store, tenant, agent.id, "available")
    for n in range(first, first + contacts):
        await bus.ingest(
            store,
            events.InboundContact(
                id=events.new_id(),
                tenant=TENANT,
                channel="sms",
                address=address(n),
                provider_id=f"SM{n:032d}",
                occurred_at=events.now_ms(),
                to="+15550001111",
                body=body(n),
            ),
        )
    closed = 0
    while closed < contacts:
        read = await router.read()
        progressed = False
        for agent in tenant.agents:
            for offer in await agents.offers(store, tenant, agent.id):
                conversation = offer["conv"]
                await agents.accept(store, tenant, agent.id, offer["reservation"])
                await agents.reply(store, tenant, agent.id, conversation, "Thanks, we are looking into it today.")
                await agents.close(store, tenant, agent.id, conversation, "resolved")
                closed += 1
                progressed = True
        while await dispatcher.read():
            pass
        if not progressed and not read:  # nothing routed, offered or left to read
            break
    return closed


@asynccontextmanager
async def archived_store(agent_count: int) -> AsyncIterator[tuple[Store, Deployment, str]]:
    """Its own redis-server and PostgreSQL (schema upgraded), a store with the archive, and the
    bench tenant prepared: (store, deployment, the database's url)."""
    with RedisServer() as redis_server, PostgresServer() as pg:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE archive")
        url = pg.url.rsplit("/", 1)[0] + "/archive"
        migrate.upgrade(url)
        store = connect(Settings(redis_url=redis_server.url))
        store.archive = await Archive.open(url)
        try:
            deployment = parse_deployment(deployment_toml(agent_count), "bench.toml")
            from router.app import processes

            await processes.prepare(store, deployment)
            yield store, deployment, url
        finally:
            await store.archive.close()
            await store.close()


async def run(opts: argparse.Namespace) -> dict:
    async with archived_store(opts.agents) as (store, deployment, url):
        keys = Keys(TENANT)
        archiver = archive.consumer(store, deployment, Settings(consumer="bench", batch=500, block_ms=10), None)
        await archiver.ensure_groups()
        baseline, keys_baseline = await used_memory(store), await key_bytes(store)
        pg_baseline = database_bytes(url)

        closed = await drill(store, deployment, opts.contacts)
        while await archiver.read():
            pass
        for stream in (keys.inbound, keys.outbound, keys.events, keys.outbox):
            await streams.trim(store, stream, keep_hours=0, approximate=False)
        before, keys_before = await used_memory(store) - baseline, await key_bytes(store) - keys_baseline

        outcomes = await archive.evict(
            store, TENANT, hot_days=HOT_DAYS, now_ms=events.now_ms() + int((HOT_DAYS + 1) * DAY_MS)
        )
        after, keys_after = await used_memory(store) - baseline, await key_bytes(store) - keys_baseline
        markers = [k async for k in store.redis.scan_iter(match=f"{keys.base}:seen:*", count=1000)]
        if markers:
            await store.redis.delete(*markers)
        expired, keys_expired = await used_memory(store) - baseline, await key_bytes(store) - keys_baseline
        left = sorted({_kind(text(k), keys.base) async for k in store.redis.scan_iter(match=f"{keys.base}:*")})
        pg_bytes = database_bytes(url) - pg_baseline
    per = max(closed, 1)
    before_each, after_each, expired_each = before / per, after / per, expired / per
    return {
        "contacts": opts.contacts,
        "closed": closed,
        "evicted": outcomes.get("evicted", 0),
        "hot_window_days": HOT_DAYS,
        "redis_bytes_per_closed_conversation": {
            "before": round(before_each),
            "after": round(after_each),
            "after_markers_expired": round(expired_each),
        },
        "ratio": round(after_each / before_each, 3) if before_each > 0 else None,
        "ratio_markers_expired": round(expired_each / before_each, 3) if before_each > 0 else None,
        # the keys alone: used_memory also holds what Redis keeps beside them (the allocator's
        # and the streams' bookkeeping, client buffers), which eviction does not touch
        "key_bytes_per_closed_conversation": {
            "before": round(keys_before / per),
            "after": round(keys_after / per),
            "after_markers_expired": round(keys_expired / per),
        },
        "key_ratio_markers_expired": round(keys_expired / keys_before, 3) if keys_before > 0 else None,
        "postgres_bytes_per_conversation": round(pg_bytes / per),
        "redis_keys_left": left,
    }


def _kind(key: str, base: str) -> str:
    """A key's kind, its ids left out: cr:{t}:cust:<id>:convs -> cust:*:convs."""
    parts = key[len(base) + 1 :].split(":")
    ids = {"cust", "conv", "agent", "msg", "res", "provider", "q", "seen", "ready"}
    shown = []
    skip = False
    for part in parts:
        shown.append("*" if skip else part)
        skip = part in ids and not skip
    return ":".join(shown)


def database_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        conn.execute("CHECKPOINT")
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def render(result: dict) -> str:
    r = result["redis_bytes_per_closed_conversation"]
    k = result["key_bytes_per_closed_conversation"]
    return "\n".join(
        [
            f"archive benchmark: {result['contacts']} SMS contacts, each accepted, answered once and closed;"
            f" {result['closed']} closed, {result['evicted']} evicted",
            f"  Redis bytes per closed conversation: before eviction {r['before']:,},"
            f" after {r['after']:,} (ratio {result['ratio']}),",
            f"  after the de-duplication markers expire {r['after_markers_expired']:,}"
            f" (ratio {result['ratio_markers_expired']})",
            f"  the keys alone (MEMORY USAGE): {k['before']:,} before, {k['after']:,} after,"
            f" {k['after_markers_expired']:,} once the markers expire (ratio {result['key_ratio_markers_expired']})",
            f"  PostgreSQL bytes per archived conversation: {result['postgres_bytes_per_conversation']:,}",
            f"  Redis keys of the tenant left: {', '.join(result['redis_keys_left'])}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench archive", description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1200)
    parser.add_argument("--agents", type=int, default=20, help="agents taking 5 SMS conversations each")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    result = asyncio.run(run(opts))
    print(json.dumps(result, indent=2) if opts.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
