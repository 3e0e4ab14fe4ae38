"""The routing worker: inbound contacts into conversations and queues, then offers.

Run as many as you like (`honcho start -c routing=3`): every decision is an
atomic script, and the consumer group shares the inbound streams among them.
"""

from __future__ import annotations

import asyncio
import logging

from ops import metrics
from router import bus, intake
from router.config import Deployment
from router.keys import ROUTING_GROUP, Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)


def consumer(store: Store, deployment: Deployment, settings: Settings) -> bus.Consumer:
    streams = [Keys(t.id).inbound for t in deployment.tenants]

    async def handle(entries: list[bus.Entry]) -> set[bus.Entry]:
        routed = await intake.route_batch(store, deployment, entries, group.dead_letter, group.name)
        metrics.observe_routed(entries, routed.done - routed.passed_over)
        # Nothing left to acknowledge: intake acknowledges each entry in the call
        # that stores its contact, and dead_letter the entries it moves.
        return set()

    group = bus.Consumer(
        store,
        ROUTING_GROUP,
        settings.consumer,
        streams,
        handle,
        batch=settings.batch,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries,
    )
    return group


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    group = consumer(store, deployment, settings)
    log.info("routing worker %s reading %d inbound streams", settings.consumer, len(group.streams))
    await group.run(stop)
