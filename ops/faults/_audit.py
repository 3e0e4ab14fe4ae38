"""After a drill: what Redis holds, against what the drill was told.

Every accepted contact must be in exactly one conversation history; every reply
must reach the outbox (the sandbox's record of what was sent) at most once and end
delivered (sent) or marked failed. The counts come from Redis alone, read after
the workers went quiet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from router import events
from router.config import Deployment
from router.keys import DISPATCH_GROUP, ROUTING_GROUP, Keys
from router.store import Store, text

FAILED = ("failed", "refused", "unknown")  # final statuses that say "not delivered", recorded as such


@dataclass
class Tally:
    offered: int = 0  # contacts the customers tried to add
    accepted: int = 0  # contacts ingest confirmed
    lost: int = 0  # accepted, in no conversation history
    duplicated: int = 0  # accepted, in histories more than once
    replies: int = 0  # agents' replies in the histories
    replies_lost: int = 0  # replies the drill's agents were told were recorded, in no history
    sent: int = 0  # replies delivered (sandbox: in the outbox, status sent)
    sent_twice: int = 0  # replies in the outbox more than once
    failed: int = 0  # replies marked failed, refused or unknown
    undelivered: int = 0  # replies neither delivered nor marked failed
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few ids of each problem, to look at

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.replies_lost or self.sent_twice or self.undelivered)

    def as_dict(self) -> dict:
        return asdict(self)


async def outstanding(store: Store, deployment: Deployment) -> dict[str, int]:
    """Work not finished yet, by kind; empty when the pipeline is quiet."""
    left: Counter = Counter()
    for tenant in deployment.tenants:
        keys = Keys(tenant.id)
        for stream, group, kind in (
            (keys.inbound, ROUTING_GROUP, "inbound"),
            (keys.outbound, DISPATCH_GROUP, "outbound"),
        ):
            for row in await store.redis.xinfo_groups(stream):
                if text(row["name"]) == group:
                    left[f"{kind} unread"] += int(row.get("lag") or 0)
                    left[f"{kind} pending"] += int(row["pending"])
        left["deliveries scheduled"] += await store.redis.zcard(keys.retries)
        for queue in tenant.queues:
            left["conversations waiting"] += await store.redis.zcard(keys.waiting(queue.id))
    return {kind: n for kind, n in left.items() if n}


async def _histories(store: Store, tenant: str) -> tuple[Counter, Counter]:
    """(inbound contact id -> times in any history, reply message id -> times) of a tenant."""
    keys = Keys(tenant)
    contacts: Counter = Counter()
    replies: Counter = Counter()
    async for key in store.redis.scan_iter(match=keys.conversation_log("*"), count=1000):
        for raw in await store.redis.lrange(key, 0, -1):
            entry = events.decode_history(raw)
            if entry.kind == "in":
                contacts[entry.id] += 1
            elif entry.kind == "out":
                replies[entry.id] += 1
    return contacts, replies


async def _outbox(store: Store, tenant: str) -> dict[str, list[str]]:
    """Message id -> the tenant's sandbox outbox entries holding it (their ids say when)."""
    found: dict[str, list[str]] = {}
    start = "-"
    while True:
        rows = await store.redis.xrange(Keys(tenant).outbox, min=start, max="+", count=5000)
        for entry_id, fields in rows:
            found.setdefault(events.decode_outbound(fields[b"e"]).id, []).append(text(entry_id))
        if len(rows) < 5000:
            return found
        start = "(" + text(rows[-1][0])


async def audit(
    store: Store, deployment: Deployment, offered: int, accepted: set[str], confirmed_replies: set[str]
) -> Tally:
    tally = Tally(offered=offered, accepted=len(accepted))
    contacts: Counter = Counter()
    replies: Counter = Counter()
    outbox: Counter = Counter()
    outbox_ids: dict[str, list[str]] = {}
    statuses: dict[str, str] = {}
    for tenant in deployment.tenants:
        found, said = await _histories(store, tenant.id)
        contacts.update(found)
        replies.update(said)
        for message, ids in (await _outbox(store, tenant.id)).items():
            outbox[message] += len(ids)
            outbox_ids.setdefault(message, []).extend(ids)
        keys = Keys(tenant.id)
        for message in said:
            status = await store.redis.hget(keys.delivery(message), "status")
            statuses[message] = text(status) if status is not None else "none"

    def note(kind: str, ids: list[str]) -> int:
        if ids:
            tally.examples[kind] = sorted(ids)[:5]
        return len(ids)

    tally.lost = note("lost", [c for c in accepted if contacts[c] == 0])
    tally.duplicated = note("duplicated", [c for c in accepted if contacts[c] > 1])
    note("replies in history twice", [m for m, n in replies.items() if n > 1])
    tally.replies = len(replies)
    tally.replies_lost = note("replies lost", [m for m in confirmed_replies if m not in replies])
    tally.sent_twice = note(
        "sent twice", [f"{m} (outbox entries {', '.join(outbox_ids[m])})" for m in replies if outbox[m] > 1]
    )
    tally.sent = sum(1 for m in replies if statuses[m] == "sent" and outbox[m])
    tally.failed = sum(1 for m in replies if statuses[m] in FAILED)
    # The rest: never attempted, still sending or scheduled, or "sent" with nothing in the
    # outbox (a delivery claimed that did not happen).
    settled = {m for m in replies if statuses[m] in FAILED or (statuses[m] == "sent" and outbox[m])}
    tally.undelivered = note(
        "undelivered", [f"{m} ({statuses[m]}, {outbox[m]} in outbox)" for m in replies if m not in settled]
    )
    note("in the outbox, never replied", [m for m in outbox if m not in replies])
    return tally
