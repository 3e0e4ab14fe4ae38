"""The load offered: the benchmark's deployment, its contacts, and the producers that add them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ops.bench._streams import entry_ms
from router import bus, events
from router.store import Store

BODY = "Hello, my order #48213 has not arrived yet and the tracking page shows nothing. Can you help?"


def deployment_toml(tenants: list[str], agents: int, capacity: int) -> str:
    """One webchat queue per tenant, and `agents` agents with room for `capacity` contacts each."""
    lines = []
    for tenant in tenants:
        lines += [
            "[[tenants]]",
            f'id = "{tenant}"',
            'entry = { default = "chat" }',
            "",
            "[[tenants.queues]]",
            'id = "chat"',
            'target = "true"',
            'channels = ["webchat"]',
            "",
        ]
        for i in range(agents):
            lines += [
                "[[tenants.agents]]",
                f'id = "a{i:03d}"',
                f"capacity = {{ webchat = {capacity}, total = {capacity} }}",
                "",
            ]
    return "\n".join(lines)


def make_contact(tenant: str, tag: str, i: int) -> events.InboundContact:
    return events.InboundContact(
        id=events.new_id(),
        tenant=tenant,
        channel="webchat",
        address=f"{tag}-visitor-{i}",
        provider_id=f"{tag}-{i}",
        occurred_at=events.now_ms(),
        body=BODY,
        metadata={"page": "/orders"},
    )


def make_contacts(tenants: list[str], tag: str, n: int) -> list[events.InboundContact]:
    return [make_contact(tenants[i % len(tenants)], tag, i) for i in range(n)]


async def produce(contacts: list, add: Callable[[Any], Awaitable[Any]], producers: int) -> float:
    """Add every contact, one call each, from `producers` concurrent tasks; returns seconds taken."""
    started = time.perf_counter()

    async def run(chunk: list) -> None:
        for contact in chunk:
            await add(contact)

    await asyncio.gather(*(run(contacts[i::producers]) for i in range(producers)))
    return time.perf_counter() - started


async def paced(store: Store, tenants: list[str], rate: float, duration: float) -> tuple[int, float, dict[str, int]]:
    """Offer `rate` contacts per second for `duration` seconds, on a fixed schedule (catching up when late).

    Returns (contacts, seconds taken, contact id -> inbound entry id ms).
    """
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    ingest_ms: dict[str, int] = {}
    pending: set[asyncio.Task] = set()

    async def one(i: int) -> None:
        contact = make_contact(tenants[i % len(tenants)], "paced", i)
        _added, entry_id = await bus.ingest(store, contact)
        ingest_ms[contact.id] = entry_ms(entry_id)

    started = loop.time()
    for i in range(total):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # One task per contact: a slow ingest never delays the next arrival (open loop).
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return total, loop.time() - started, ingest_ms
