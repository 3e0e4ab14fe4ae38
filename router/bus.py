"""The stream bus: validated appends, idempotent ingest, and consumer groups.

A consumer acknowledges an entry only after its handler stored the effect; an
entry whose consumer died is taken over by another after ``claim_idle_ms``
(XAUTOCLAIM); an entry delivered more than ``max_deliveries`` times goes to the
shard's dead-letter stream, where an operator can inspect and replay it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec
from redis.exceptions import ResponseError

from router import atomic, events, logcontext
from router.keys import Keys, shard_of
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage, text

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 24 * 3600  # how long a provider id is remembered for de-duplication


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: str
    payload: bytes
    deliveries: int = 1


# A handler stores the effect of a batch and returns the entries it finished
# (entries, not ids: a consumer reading several streams can get the same id
# from two of them); the others stay pending and are retried after claim_idle_ms.
Handler = Callable[[list[Entry]], Awaitable[set[Entry]]]


async def publish(store: Store, stream: str, event: msgspec.Struct, *, dedup: str = "") -> str:
    """Append a validated event to a stream once; returns the entry id.

    The store's client sends a command again when its answer was lost, and providers
    retry webhooks: a plain XADD would then count an opt-out (or any event) twice in
    reports. So an event is appended once per `dedup` key, by default its kind and
    provider id, through the same script as ingest; a repeat gets the first entry's id.
    An event with neither (an internal notice) is appended as is.
    """
    payload = events.encode(event)
    provider_id = getattr(event, "provider_id", "")
    if not dedup and provider_id:
        dedup = f"{type(event).__name__}:{getattr(event, 'channel', '')}:{provider_id}"
    if not dedup:
        return text(await store.redis.xadd(stream, {"e": payload}))
    # "event" keeps these markers apart from ingest's per-contact ones (scope: the channel).
    seen = Keys(shard_of(stream)).seen("event", dedup)
    _added, entry_id = await atomic.ingest(store, seen=seen, stream=stream, payload=payload, ttl_s=SEEN_TTL_S)
    return entry_id


async def ingest(store: Store, contact: events.InboundContact) -> tuple[bool, str]:
    """Put a customer's contact on its tenant's inbound stream, once per provider id.

    Returns (added, entry id); a retried webhook gets (False, the first entry's id).
    """
    # What is logged after a contact is taken in is about it (a webhook's request runs in a
    # task of its own; a loop taking in many wraps each in logcontext.about).
    logcontext.bind(tenant=contact.tenant, contact=contact.id)
    keys = Keys(contact.tenant)
    payload = events.encode(contact)
    seen = keys.seen(contact.channel, contact.provider_id)
    return await atomic.ingest(store, seen=seen, stream=keys.inbound, payload=payload, ttl_s=SEEN_TTL_S)


async def ensure_group(store: Store, stream: str, group: str) -> None:
    try:
        await store.redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Consumer:
    """One member of a consumer group reading a set of streams."""

    def __init__(
        self,
        store: Store,
        group: str,
        name: str,
        streams: Sequence[str],
        handler: Handler,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        defer_acks: bool = False,
    ) -> None:
        self.store = store
        self.group = group
        self.name = name
        self.streams = list(streams)
        self.handler = handler
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        # With defer_acks, a batch's XACK rides with the next XREADGROUP: one round
        # trip fewer per batch. A crash in between redelivers that batch, which
        # the handlers' idempotency makes harmless.
        self.defer_acks = defer_acks
        self._acks: dict[str, list[str]] = {}
        self._last_claim: dict[tuple[str, ...], float] = {}  # per read set: each loop reclaims its own streams

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            await ensure_group(self.store, stream, self.group)

    def _read_sets(self) -> list[list[str]]:
        # One XREADGROUP can read many streams on one Redis; on a cluster each
        # shard's stream may live on another node, so each gets its own read.
        if self.store.cluster:
            return [[stream] for stream in self.streams]
        return [self.streams] if self.streams else []

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_groups()
        try:
            await asyncio.gather(*(self._loop(streams, stop) for streams in self._read_sets()))
        finally:
            await self.flush_acks()

    async def _loop(self, streams: list[str], stop: asyncio.Event) -> None:
        outage = StoreOutage(f"consumer {self.group}/{self.name}")
        regroup = False
        while not stop.is_set():
            try:
                if regroup:
                    await self.ensure_groups()
                    regroup = False
                if time.monotonic() - self._last_claim.get(tuple(streams), 0.0) > self.claim_idle_ms / 2000:
                    self._last_claim[tuple(streams)] = time.monotonic()
                    for stream in streams:
                        await self.reclaim(stream)
                        await self.forget_departed(stream)
                await self.read(streams)
            except asyncio.CancelledError:
                raise
            except STORE_ERRORS as exc:
                # The store is away: one warning per outage and a capped backoff, not a
                # traceback per attempt.
                await stopped(stop, outage.failed(exc))
                continue
            except ResponseError as exc:
                outage.recovered()  # it answered
                if not str(exc).startswith("NOGROUP"):
                    log.exception("consumer %s/%s failed a cycle; retrying", self.group, self.name)
                    await stopped(stop, 1.0)
                    continue
                # The store came back without its data (no AOF, an empty replica promoted, a
                # deleted stream): without its group every read fails; make it again, as a
                # process starting now would.
                log.warning("consumer group %s is gone from %s; creating it again", self.group, ", ".join(streams))
                regroup = True
                continue
            except Exception:
                log.exception("consumer %s/%s failed a cycle; retrying", self.group, self.name)
                await stopped(stop, 1.0)
                continue
            outage.recovered()

    async def read(self, streams: list[str] | None = None) -> int:
        """Read and handle one batch of new entries; returns how many were read."""
        streams = self.streams if streams is None else streams
        started = time.monotonic()
        acks = {stream: self._acks.pop(stream) for stream in streams if self._acks.get(stream)}
        try:
            block = self.store.blocking(self.block_ms)
            if acks:
                async with self.store.redis.pipeline(transaction=False) as pipe:
                    for stream, ids in acks.items():
                        pipe.xack(stream, self.group, *ids)
                    pipe.xreadgroup(self.group, self.name, {s: ">" for s in streams}, count=self.batch, block=block)
                    reply = (await pipe.execute())[-1]
            else:
                reply = await self.store.redis.xreadgroup(
                    self.group, self.name, {s: ">" for s in streams}, count=self.batch, block=block
                )
        except BaseException:
            for stream, ids in acks.items():  # not known to be acknowledged: keep them for the next try
                self._acks.setdefault(stream, []).extend(ids)
            raise
        entries = [
            Entry(text(stream), text(entry_id), fields[b"e"] if b"e" in fields else fields.get("e", b""))
            for stream, items in (reply or [])
            for entry_id, fields in items
            if fields
        ]
        if not entries:
            # A store that answers a blocking read at once (the embedded one, on fakeredis
            # before 2.41) must not make this loop spin.
            remaining = self.block_ms / 1000 - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(min(remaining, 0.02))
            return 0
        await self._handle(entries)
        return len(entries)

    async def reclaim(self, stream: str) -> int:
        """Take over entries left pending past claim_idle_ms (a dead consumer's work)."""
        handled = 0
        start = "0-0"
        while True:
            reply = await self.store.redis.xautoclaim(
                stream, self.group, self.name, min_idle_time=self.claim_idle_ms, start_id=start, count=self.batch
            )
            start = text(reply[0])
            claimed = [(eid, fields) for eid, fields in reply[1] if fields]
            if claimed:
                counts = await self._delivery_counts(stream, [text(eid) for eid, _ in claimed])
                entries = []
                for eid, fields in claimed:
                    entry_id = text(eid)
                    payload = fields.get(b"e", fields.get("e", b""))
                    entry = Entry(stream, entry_id, payload, counts.get(entry_id, 1))
                    if entry.deliveries > self.max_deliveries:
                        await self.dead_letter(entry, "too many deliveries")
                    else:
                        entries.append(entry)
                if entries:
                    log.warning("consumer %s took over %d entries of %s", self.name, len(entries), stream)
                    await self._handle(entries)
                    handled += len(entries)
            if start == "0-0":
                return handled

    async def forget_departed(self, stream: str, idle_ms: int = 3_600_000) -> list[str]:
        """Remove consumers of restarted processes (no pending entries, idle for an hour)
        so the group's consumer list shows the live workers."""
        removed = []
        for consumer in await self.store.redis.xinfo_consumers(stream, self.group):
            name = text(consumer["name"])
            if name != self.name and int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms:
                await self.store.redis.xgroup_delconsumer(stream, self.group, name)
                removed.append(name)
        return removed

    async def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        # One exact lookup per id (in one round trip): a range from the first to the
        # last claimed id also holds other consumers' entries and, capped by a count,
        # could miss ours, and a poison entry would then never reach the dead letters.
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {text(row["message_id"]): int(row["times_delivered"]) for rows in replies for row in rows}

    async def _handle(self, entries: list[Entry]) -> None:
        done = await self.handler(entries)
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            if entry in done:
                by_stream.setdefault(entry.stream, []).append(entry.id)
        for stream, ids in by_stream.items():
            if self.defer_acks:
                self._acks.setdefault(stream, []).extend(ids)
            else:
                await self.store.redis.xack(stream, self.group, *ids)

    async def flush_acks(self) -> None:
        """Acknowledge what deferred acknowledgements are still held (on the way out)."""
        acks, self._acks = self._acks, {}
        for stream, ids in acks.items():
            await self.store.redis.xack(stream, self.group, *ids)

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, as one step,
        unless another consumer finished it meanwhile (dead_letter.lua)."""
        with logcontext.about(tenant=shard_of(entry.stream)):
            await self._dead_letter(entry, reason)

    async def _dead_letter(self, entry: Entry, reason: str) -> None:
        fields = {
            "stream": entry.stream,
            "id": entry.id,
            "group": self.group,
            "deliveries": entry.deliveries,
            "reason": reason,
            "e": entry.payload,
        }
        moved = await atomic.dead_letter(
            self.store,
            stream=entry.stream,
            dead=Keys(shard_of(entry.stream)).dead,
            group=self.group,
            entry_id=entry.id,
            fields=fields,
        )
        if not moved:
            log.info("%s %s was finished elsewhere meanwhile; not dead-lettered", entry.stream, entry.id)
            return
        log.error("dead-lettered %s %s after %d deliveries: %s", entry.stream, entry.id, entry.deliveries, reason)
