"""The timers worker: reservation timeouts, wrap-up ends, escalation, SLA checks.

Timers live in Redis, claimed with a lease, so a restart or a second timers
worker loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import logging

from router import timers
from router.config import Deployment, Settings
from router.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.1


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    log.info("timers worker %s watching %d tenants", settings.consumer, len(deployment.tenants))
    while not stop.is_set():
        handled = 0
        for tenant in deployment.tenants:
            try:
                handled += await timers.run_due(store, tenant)
            except Exception:
                log.exception("timers of %s failed; retrying", tenant.id)
        if not handled:
            await asyncio.sleep(POLL_S)
