"""A conversation's records as Redis holds them, read for the archive.

`held` spells out what the archive keeps and eviction must find unchanged: every field
of the conversation's hash (in the order read), how long its history is (a history is
only ever appended to), and each reply's delivery fields. evict.lua spells the same from
what Redis holds when it runs, and deletes nothing if the two differ: a conversation
that changed after its archive commit stays until it has been archived again. The
archive keeps its sha1 (`digest`) beside the conversation.
"""

from __future__ import annotations

import hashlib

import msgspec

from router import events
from router.keys import Keys
from router.store import Store, text

# A reply's delivery fields that the archive keeps (and the digest covers), in this order.
DELIVERY_FIELDS = ("status", "error", "provider_id", "attempts")


class Snapshot(msgspec.Struct, kw_only=True):
    tenant: str
    conversation: str
    record: dict[str, str]  # the conversation's hash, as stored (router.conversations.complete fills it in)
    fields: list[str]  # the hash's field names, in the order the digest took them
    entries: list[events.HistoryEntry]
    deliveries: dict[str, dict[str, str]]  # a reply's id -> its DELIVERY_FIELDS
    customer: dict[str, str]  # the customer's hash ({} if gone)
    held: bytes
    # its calls' recordings (channels/voice/recording.py: each `rec:<sid>` hash), archived beside it; not
    # in `held`: a recording is not evicted with its conversation (its own retention deletes it)
    calls: list[dict[str, str]] = []

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.held).hexdigest()

    @property
    def replies(self) -> list[str]:
        return [e.id for e in self.entries if e.kind == "out"]


def spelt(record_fields: list[tuple[str, str]], log_length: int, deliveries: list[list[str]]) -> bytes:
    """Length-prefixed parts, as evict.lua builds them (lengths in bytes, as Lua's #)."""

    def part(value: str) -> bytes:
        data = value.encode()
        return b"%d:%s" % (len(data), data)

    parts = [part(name) + part(value) for name, value in record_fields]
    parts.append(str(log_length).encode())
    for values in deliveries:
        parts.extend(part(value) for value in values)
    return b"\n".join(parts)


async def read(store: Store, tenant: str, conversation: str) -> Snapshot | None:
    """The conversation as Redis holds it now, or None when Redis has no such conversation
    (never archived there, or evicted: the archive's copy is then the one to keep)."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.conversation(conversation))
        pipe.lrange(keys.conversation_log(conversation), 0, -1)
        raw_record, raw_log = await pipe.execute()
    if not raw_record:
        return None
    pairs = [(text(k), text(v)) for k, v in raw_record.items()]
    entries = [events.decode_history(item) for item in raw_log]
    replies = [e.id for e in entries if e.kind == "out"]
    record = dict(pairs)
    async with store.redis.pipeline(transaction=False) as pipe:
        for message in replies:
            pipe.hmget(keys.delivery(message), *DELIVERY_FIELDS)
        pipe.zrange(keys.conversation_recordings(conversation), 0, -1)
        if record.get("customer"):
            pipe.hgetall(keys.customer(record["customer"]))
        replies_raw = await pipe.execute()
    customer_raw = replies_raw.pop() if record.get("customer") else {}
    sids = [text(sid) for sid in replies_raw.pop()]
    calls = []
    if sids:
        async with store.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(keys.recording(sid))
            calls = [{text(k): text(v) for k, v in found.items()} for found in await pipe.execute()]
    rows = [[text(v) if v is not None else "" for v in row] for row in replies_raw]
    return Snapshot(
        tenant=tenant,
        conversation=conversation,
        record=record,
        fields=[name for name, _ in pairs],
        entries=entries,
        deliveries={m: dict(zip(DELIVERY_FIELDS, row, strict=True)) for m, row in zip(replies, rows, strict=True)},
        customer={text(k): text(v) for k, v in customer_raw.items()},
        held=spelt(pairs, len(raw_log), rows),
        calls=[found for found in calls if found.get("sid")],
    )
