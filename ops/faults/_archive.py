"""The archive under faults: its backlog while settling, and its audit once quiet.

The audit compares what Redis holds with what PostgreSQL holds: every events stream entry
once (nothing lost, nothing doubled: the table's key is the entry's id, so a double would
be a second id for one event, which the stream does not have), and each conversation's
history, message by message, in order. Nothing is evicted during a drill (the hot window
is days), so Redis holds every conversation to compare with.
"""

from __future__ import annotations

from collections import Counter

import psycopg

from router import events
from router.config import Deployment
from router.keys import ARCHIVE_GROUP, Keys
from router.store import Store, text


async def behind(store: Store, deployment: Deployment) -> int:
    """Events entries the archive group has not yet acknowledged (pending or not yet read)."""
    total = 0
    for tenant in deployment.tenants:
        groups = {text(g["name"]): g for g in await store.redis.xinfo_groups(Keys(tenant.id).events)}
        group = groups.get(ARCHIVE_GROUP)
        if group is None:
            total += int(await store.redis.xlen(Keys(tenant.id).events)) or 1  # not even started
            continue
        total += int(group["pending"]) + int(group["lag"] or 0)
    return total


async def audit(store: Store, deployment: Deployment, url: str) -> dict[str, int]:
    """Events and histories the archive lacks or holds otherwise than Redis; zeros when whole."""
    found = Counter(
        dict.fromkeys(("events", "events_missing", "events_unknown", "conversations", "histories_differing"), 0)
    )
    with psycopg.connect(url) as conn:
        for tenant in deployment.tenants:
            keys = Keys(tenant.id)
            stream = {text(i) for i, _ in await store.redis.xrange(keys.events)}
            rows = conn.execute("SELECT entry FROM events WHERE tenant = %s", (tenant.id,)).fetchall()
            archived = {row[0] for row in rows}
            found["events"] += len(stream)
            found["events_missing"] += len(stream - archived)
            found["events_unknown"] += len(archived - stream)
            async for key in store.redis.scan_iter(match=f"{keys.base}:conv:*:log", count=1000):
                conversation = text(key).split(":")[-2]
                history = [events.decode_history(raw).id for raw in await store.redis.lrange(key, 0, -1)]
                rows = conn.execute(
                    "SELECT id FROM messages WHERE tenant = %s AND conversation = %s ORDER BY position",
                    (tenant.id, conversation),
                ).fetchall()
                found["conversations"] += 1
                if [row[0] for row in rows] != history:
                    found["histories_differing"] += 1
    return {name: found[name] for name in found}


def whole(result: dict[str, int] | None) -> bool:
    return result is None or not (
        result.get("events_missing") or result.get("events_unknown") or result.get("histories_differing")
    )
