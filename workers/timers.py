"""The timers worker: reservation timeouts, wrap-up ends, escalation, SLA checks,
calls abandoned before routing caught up, and the periodic trimming of streams.

Timers live in Redis, claimed with a lease, so a restart or a second timers
worker loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ops import streams
from router import timers
from router.config import Deployment, Settings
from router.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.1
TRIM_EVERY_S = 600
SWEEP_EVERY_S = 2.0


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    log.info("timers worker %s watching %d tenants", settings.consumer, len(deployment.tenants))
    last_trim = last_sweep = time.monotonic()
    while not stop.is_set():
        handled = 0
        for tenant in deployment.tenants:
            try:
                handled += await timers.run_due(store, tenant)
            except Exception:
                log.exception("timers of %s failed; retrying", tenant.id)
        if time.monotonic() - last_sweep > SWEEP_EVERY_S:
            last_sweep = time.monotonic()
            await _sweep(store, deployment)
        if time.monotonic() - last_trim > TRIM_EVERY_S:
            last_trim = last_sweep = time.monotonic()
            await _trim(store, deployment, settings)
        if not handled:
            await asyncio.sleep(POLL_S)


async def _trim(store: Store, deployment: Deployment, settings: Settings) -> None:
    for tenant in deployment.tenants:
        try:
            removed = await streams.trim_tenant(store, tenant.id, keep_hours=settings.stream_keep_hours)
        except Exception:
            log.exception("trimming the streams of %s failed", tenant.id)
            continue
        if any(removed.values()):
            log.info("trimmed %s: %s", tenant.id, removed)


async def _sweep(store: Store, deployment: Deployment) -> None:
    """Settle what waits on routing: calls that ended before routing opened their
    conversation are counted abandoned once it exists (without waiting for the
    tenant's next call)."""
    from channels.voice.status import resolve_pending

    for tenant in deployment.tenants:
        if tenant.voice.numbers:
            await resolve_pending(store, tenant.id)
