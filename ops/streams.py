"""Stream maintenance: trimming that never drops unacknowledged entries (nor events
of a day not rolled up into its report yet), and the dead-letter stream (list, replay)."""

from __future__ import annotations

import time

from ops import rollups
from router import events
from router.keys import Keys
from router.store import Store, text


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_point(store: Store, stream: str) -> str | None:
    """The oldest entry id any consumer group still needs (None: no group reads it)."""
    try:
        groups = await store.redis.xinfo_groups(stream)
    except Exception:
        return None
    bounds = []
    for group in groups:
        name = text(group["name"])
        pending = await store.redis.xpending(stream, name)
        if pending["pending"]:
            bounds.append(text(pending["min"]))
        else:
            bounds.append(text(group["last-delivered-id"]))
    return min(bounds, key=_id_tuple) if bounds else None


async def trim(
    store: Store, stream: str, *, keep_hours: float = 72.0, approximate: bool = True, keep_from: str | None = None
) -> int:
    """Drop entries older than keep_hours that every group has acknowledged (and older
    than keep_from, when given); returns how many."""
    cutoff = f"{int((time.time() - keep_hours * 3600) * 1000)}-0"
    needed = await safe_trim_point(store, stream)
    for bound in (needed, keep_from):
        if bound is not None and _id_tuple(bound) < _id_tuple(cutoff):
            cutoff = bound
    return int(await store.redis.xtrim(stream, minid=cutoff, approximate=approximate))


async def trim_tenant(store: Store, tenant: str, *, keep_hours: float = 72.0) -> dict[str, int]:
    """Trim a tenant's streams; the events stream keeps what the first day not rolled up
    into its report still needs (ops.rollups), however old."""
    keys = Keys(tenant)
    removed = {stream: await trim(store, stream, keep_hours=keep_hours) for stream in [keys.inbound, keys.outbound]}
    floor = await rollups.trim_floor(store, tenant)
    removed[keys.events] = await trim(store, keys.events, keep_hours=keep_hours, keep_from=floor)
    removed[keys.outbox] = await trim(store, keys.outbox, keep_hours=keep_hours)
    return removed


async def dead_letters(store: Store, tenant: str, count: int = 100) -> list[dict[str, str]]:
    """The dead-letter stream, oldest first, with a readable summary of each payload."""
    rows = await store.redis.xrange(Keys(tenant).dead, count=count)
    result = []
    for entry_id, fields in rows:
        item = {k.decode(): (v.decode(errors="replace") if k != b"e" else "") for k, v in fields.items()}
        item["dead_id"] = entry_id.decode()
        item["summary"] = _summary(fields.get(b"e", b""))
        result.append(item)
    return result


def _summary(payload: bytes) -> str:
    for decode in (events.decode_inbound, events.decode_outbound):
        try:
            event = decode(payload)
        except Exception:
            continue
        return f"{type(event).__name__} {event.channel} {event.id}: {event.body[:60]!r}"
    return f"{len(payload)} undecodable bytes"


async def replay(store: Store, tenant: str, dead_ids: list[str] | None = None) -> list[str]:
    """Put dead letters back on the stream they came from (all of them when no ids).

    Safe to repeat: each dead letter goes back once (its XADD and its removal are one
    transaction), and no entry that took effect was dead-lettered in the first place
    (dead_letter.lua moves only entries still pending). A contact whose intake failed part
    way may have left events or history behind, which its replay does not undo.
    """
    keys = Keys(tenant)
    rows = await store.redis.xrange(keys.dead)
    replayed = []
    for entry_id, fields in rows:
        dead_id = entry_id.decode()
        if dead_ids and dead_id not in dead_ids:
            continue
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(fields[b"stream"].decode(), {"e": fields[b"e"]})
            pipe.xdel(keys.dead, dead_id)
            await pipe.execute()
        replayed.append(dead_id)
    return replayed
