"""The timers worker: reservation timeouts, wrap-up ends, escalation, SLA checks,
calls abandoned before routing caught up, and the periodic upkeep of streams: each
tenant's days that are over are rolled up into their reports first, then the streams
are trimmed (never past what a day not rolled up still needs); then call recordings
past their retention are deleted (channels.voice.recording.delete_expired).

Timers live in Redis, claimed with a lease, so a restart or a second timers
worker loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels._twilio_rest import TwilioClients
from channels.voice import recording
from channels.voice.status import resolve_pending
from ops import rollups, streams
from router import timers
from router.config import Deployment
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage

log = logging.getLogger(__name__)

POLL_S = 0.1
TRIM_EVERY_S = 600
SWEEP_EVERY_S = 2.0


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    log.info("timers worker %s watching %d tenants", settings.consumer, len(deployment.tenants))
    last_trim = last_sweep = time.monotonic()
    outage = StoreOutage("timers worker")
    upkeep: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            try:
                handled = await _run_due(store, deployment, settings.base_url)
                if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    await _sweep(store, deployment)
                if time.monotonic() - last_trim > TRIM_EVERY_S and (upkeep is None or upkeep.done()):
                    last_trim = last_sweep = time.monotonic()
                    # Rolling up a day reads days of events: beside the timers, not in their way.
                    upkeep = asyncio.create_task(_upkeep(store, deployment, settings))
            except STORE_ERRORS as exc:
                # The store is away (restarting, unreachable): one warning, then a quiet backoff.
                await stopped(stop, outage.failed(exc))
                continue
            outage.recovered()
            if not handled:
                await asyncio.sleep(POLL_S)
    finally:
        if upkeep is not None and not upkeep.done():
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)


async def _run_due(store: Store, deployment: Deployment, base_url: str) -> int:
    handled = 0
    for tenant in deployment.tenants:
        try:
            handled += await timers.run_due(store, tenant, base_url=base_url)
        except STORE_ERRORS:
            raise
        except Exception:  # one tenant's bad timer must not stop the others'
            log.exception("timers of %s failed; retrying", tenant.id)
    return handled


async def _upkeep(store: Store, deployment: Deployment, settings: Settings) -> None:
    try:
        await _trim(store, deployment, settings)
        await _expire_recordings(store, deployment, settings)
    except STORE_ERRORS as exc:  # the main loop reports the outage; the next pass catches up
        log.info("stream upkeep stopped by the store: %s", exc)


async def _expire_recordings(store: Store, deployment: Deployment, settings: Settings) -> None:
    """Call recordings kept past their tenant's retention: deleted at Twilio, then here."""
    twilio = TwilioClients(settings)
    try:
        for tenant in deployment.tenants:
            try:
                await recording.delete_expired(store, twilio, tenant)
            except STORE_ERRORS:
                raise
            except Exception:  # one tenant's failure must not keep the others' recordings
                log.exception("deleting the expired recordings of %s failed", tenant.id)
    finally:
        await twilio.close()


async def _trim(store: Store, deployment: Deployment, settings: Settings) -> None:
    """Each tenant's days that are over are rolled up, then its streams trimmed."""
    for tenant in deployment.tenants:
        try:
            rolled = await rollups.roll_up_due(store, tenant)
        except STORE_ERRORS:
            raise
        except Exception:  # the trim below still keeps every event of a day not rolled up
            log.exception("rolling up the reports of %s failed", tenant.id)
        else:
            if rolled:
                log.info("rolled up the reports of %s: %s to %s", tenant.id, rolled[0], rolled[-1])
        try:
            removed = await streams.trim_tenant(store, tenant.id, keep_hours=settings.stream_keep_hours)
        except STORE_ERRORS:
            raise
        except Exception:
            log.exception("trimming the streams of %s failed", tenant.id)
            continue
        if any(removed.values()):
            log.info("trimmed %s: %s", tenant.id, removed)


async def _sweep(store: Store, deployment: Deployment) -> None:
    """Settle what waits on routing: calls that ended before routing opened their
    conversation are counted abandoned once it exists (without waiting for the
    tenant's next call)."""
    for tenant in deployment.tenants:
        if tenant.voice.numbers:
            try:
                await resolve_pending(store, tenant.id)
            except STORE_ERRORS:
                raise
            except Exception:  # a bug here must not stop the timers role
                log.exception("settling the pending calls of %s failed", tenant.id)
