"""The customers of a fault drill: a steady, open-loop stream of inbound contacts
through `router.bus.ingest`, as the channel adapters add them.

A contact counts as accepted only once ingest answered for it. Redis may be down
or drop the connection in between: the contact is then offered again, with the
same provider id, until ingest answers. The ingest script adds a provider id
once, so a retry after an attempt that did land (its answer lost) gets the first
entry back rather than a second one: that contact is accepted too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from router import bus, events
from router.store import Store

log = logging.getLogger(__name__)

BODY = "Hi, my parcel has not arrived and the tracking page shows nothing. Can you help?"
RETRY_CAP_S = 2.0


@dataclass
class Customers:
    store: Store
    tenants: list[str]
    rng: random.Random
    tag: str  # makes this run's provider ids unique
    returning: float = 0.2  # share of contacts from a customer who wrote before (joins their open conversation)
    give_up_s: float = 60.0  # an ingest that cannot get through for this long is not accepted
    offered: dict[str, events.InboundContact] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    retried: int = 0  # ingest attempts that failed and were made again
    _addresses: list[tuple[str, str]] = field(default_factory=list)

    def contact(self, n: int) -> events.InboundContact:
        if self._addresses and self.rng.random() < self.returning:
            tenant, address = self.rng.choice(self._addresses)
        else:
            tenant, address = self.tenants[n % len(self.tenants)], f"+1555{n:07d}"
            self._addresses.append((tenant, address))
        return events.InboundContact(
            id=events.new_id(),
            tenant=tenant,
            channel="sms",
            address=address,
            provider_id=f"{self.tag}-{n}",
            occurred_at=events.now_ms(),
            body=BODY,
        )

    async def run(self, rate: float, seconds: float) -> None:
        """Offer `rate` contacts per second for `seconds`, on a fixed schedule: a slow or
        failing ingest never delays the next arrival."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        started = loop.time()
        for n in range(int(rate * seconds)):
            delay = started + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            contact = self.contact(n)
            self.offered[contact.id] = contact
            task = asyncio.create_task(self._ingest(contact))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def _ingest(self, contact: events.InboundContact) -> None:
        deadline = time.monotonic() + self.give_up_s
        wait = 0.05
        while True:
            try:
                await bus.ingest(self.store, contact)
            except (RedisError, OSError) as exc:
                if time.monotonic() > deadline:
                    log.error("contact %s not accepted: ingest failed for %.0f s (%s)", contact.id, self.give_up_s, exc)
                    return
                self.retried += 1
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_CAP_S)
                continue
            self.accepted.add(contact.id)
            return
