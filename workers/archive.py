"""The archive worker: each tenant's events stream into PostgreSQL, and Redis kept to the hot set.

It reads the events streams in its own consumer group (`archive`). For each batch it
writes, per tenant and in one transaction, the entries (the audit trail) and the
conversations they name, as Redis holds them then; it acknowledges the entries only
after that transaction committed. Every write is an upsert keyed by our ids, so a
batch redelivered after a crash, or replayed, changes nothing.

Every EVICT_EVERY_S it also evicts, per tenant, the conversations closed more than
CONTACTROUTER_HOT_DAYS (or the tenant's hot_days) ago: each is archived once more,
committed, and then removed from Redis by evict.lua only if Redis still holds exactly
what was committed. Then it deletes from the archive what is older than the tenant's
retention_days, if it has one, and takes recordings and attachments off messages older
than the tenant's periods for them (router/records/retention.py).

While PostgreSQL is away the worker waits with the batch it holds (nothing acknowledged,
nothing evicted); the events wait in the streams, whose trimming keeps what a group
has not acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict

import msgspec

from router import atomic, bus, events
from router.attachments import AttachmentStore
from router.config import Deployment
from router.keys import ARCHIVE_GROUP, Keys, shard_of
from router.records import retention
from router.records.archive import UNAVAILABLE, Archive
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage

log = logging.getLogger(__name__)

EVICT_EVERY_S = 60.0
EVICT_BATCH = 200  # conversations archived again and evicted per transaction
DAY_MS = 86_400_000
DATABASE_ERRORS = UNAVAILABLE  # PostgreSQL away: a connection refused or dropped, no connection in time


def archive_of(store: Store) -> Archive:
    if store.archive is None:
        raise RuntimeError("the archive role needs DATABASE_URL (PostgreSQL, upgraded with `contactrouter db upgrade`)")
    return store.archive


async def write_batch(store: Store, entries: list[bus.Entry]) -> set[bus.Entry]:
    """Archive a batch of events entries, per tenant in one transaction; the entries done."""
    archive = archive_of(store)
    by_tenant: dict[str, list[tuple[bus.Entry, events.StateEvent]]] = defaultdict(list)
    for entry in entries:
        try:
            event = events.decode_state(entry.payload, entry.id)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Nothing to keep but its bytes; it stays pending and reaches the dead letters.
            log.error("events entry %s of %s does not decode; left pending", entry.id, entry.stream)
            continue
        by_tenant[shard_of(entry.stream)].append((entry, event))
    done: set[bus.Entry] = set()
    for tenant, items in by_tenant.items():
        conversations = {event.conversation for _, event in items if event.conversation}
        await archive.archive(store, tenant, [(entry.id, event) for entry, event in items], conversations)
        done.update(entry for entry, _ in items)
    return done


async def evict(store: Store, tenant: str, *, hot_days: float, now_ms: int | None = None) -> dict[str, int]:
    """Evict the tenant's conversations closed before the hot window: archive each again,
    commit, then remove it from Redis if unchanged. Returns how many ended each way."""
    archive = archive_of(store)
    closed_before = (now_ms if now_ms is not None else events.now_ms()) - int(hot_days * DAY_MS)
    outcomes: dict[str, int] = defaultdict(int)
    while True:
        candidates = await archive.evictable(tenant, closed_before, EVICT_BATCH)
        if not candidates:
            return dict(outcomes)
        snapshots = await archive.archive(store, tenant, conversations=candidates)
        gone = set(candidates) - {s.conversation for s in snapshots}  # not in Redis: the archive's is the copy
        evicted = set(gone)
        if gone:
            outcomes["gone"] += len(gone)
        kept = 0
        mails = await archive.email_message_ids(tenant, [taken.conversation for taken in snapshots])
        for taken in snapshots:
            outcome = await atomic.evict(
                store,
                tenant,
                conversation=taken.conversation,
                held=taken.held,
                closed_before=closed_before,
                message_ids="\n".join(taken.replies),
                fields=taken.fields,
                thread_refs="\n".join(mails.get(taken.conversation, ())),
            )
            outcomes[outcome] += 1
            if outcome in ("evicted", "gone"):
                evicted.add(taken.conversation)
            else:
                kept += 1  # changed since (archived again next time), reopened, or not old enough
        await archive.mark_evicted(tenant, sorted(evicted))
        if kept == len(candidates):  # nothing moved: the rest waits for the next sweep
            return dict(outcomes)


def consumer(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> bus.Consumer:
    streams = [Keys(t.id).events for t in deployment.tenants]

    async def handle(entries: list[bus.Entry]) -> set[bus.Entry]:
        outage = StoreOutage("archive database")
        while True:
            try:
                done = await write_batch(store, entries)
            except DATABASE_ERRORS as exc:
                # Hold the batch until PostgreSQL answers: acknowledged is only what was committed.
                if await stopped(stop, outage.failed(exc)):
                    return set()
                continue
            outage.recovered()
            return done

    return bus.Consumer(
        store,
        ARCHIVE_GROUP,
        settings.consumer,
        streams,
        handle,
        batch=settings.batch,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries,
    )


async def expire(
    store: Store,
    tenant: str,
    *,
    retention_days: int,
    recordings_days: int = 0,
    attachments_days: int = 0,
    files: AttachmentStore | None = None,
    now_ms: int | None = None,
) -> dict[str, int]:
    """Retention: delete from the archive what closed more than `retention_days` ago, and take
    recordings and other attachments off messages older than their own periods (0: kept as
    long as their conversation, for ever by default), deleting the stored files nobody else's
    message refers to from `files`. Returns how many of each went."""
    now_ms = now_ms if now_ms is not None else events.now_ms()
    archive = archive_of(store)
    gone: dict[str, int] = {}
    for kind, days in ((retention.RECORDINGS, recordings_days), (retention.ATTACHMENTS, attachments_days)):
        if days > 0 and (retention_days <= 0 or days < retention_days):
            before = dt.datetime.fromtimestamp((now_ms - days * DAY_MS) / 1000, dt.UTC)
            gone.update(await retention.expire_kind(archive, files, tenant, kind, before))
    if retention_days > 0:
        gone.update(await archive.expire(tenant, now_ms - retention_days * DAY_MS, files=files))
    return gone


async def _evict_loop(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    outage = StoreOutage("archive eviction")
    files = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
    while not await stopped(stop, EVICT_EVERY_S):
        started = time.monotonic()
        try:
            for tenant in deployment.tenants:
                hot_days = settings.hot_days if tenant.hot_days is None else tenant.hot_days
                outcomes = await evict(store, tenant.id, hot_days=hot_days)
                if outcomes.get("evicted"):
                    log.info("evicted %d archived conversations of %s from Redis", outcomes["evicted"], tenant.id)
                gone = await expire(
                    store,
                    tenant.id,
                    retention_days=tenant.retention_days,
                    recordings_days=tenant.voice.recording_retention_days or 0,  # as the calls' (channels.voice)
                    attachments_days=tenant.attachments_retention_days,
                    files=files,
                )
                if any(gone.values()):
                    log.info("retention: deleted %s of %s from the archive", gone, tenant.id)
        except (*DATABASE_ERRORS, *STORE_ERRORS) as exc:
            outage.failed(exc)
            continue
        except Exception:
            log.exception("eviction failed; trying again in %.0f s", EVICT_EVERY_S)
            continue
        outage.recovered()
        log.debug("eviction sweep took %.1f s", time.monotonic() - started)


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    if store.archive is None:
        # `honcho start` runs every type of the Procfile: without an archive this one waits,
        # rather than failing and taking the others down with it.
        log.warning("archive process started without DATABASE_URL: no archive, Redis keeps everything; it waits")
        await stop.wait()
        return
    group = consumer(store, deployment, settings, stop)
    log.info("archive worker %s reading %d events streams", settings.consumer, len(group.streams))
    await asyncio.gather(group.run(stop), _evict_loop(store, deployment, settings, stop))
