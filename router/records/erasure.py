"""Erasure of one customer on request (GDPR art. 17, PIPL art. 47): everything the product
holds of them, in Redis (their web chat transcript too), in the archive and in the attachment
store (a file nobody else's message refers to), with an audit entry that says what was
erased, when and by whom, and nothing of what it held.

Redis goes first: once it no longer holds the customer, no archive worker can write them
back from a snapshot. A customer with a conversation still open is refused (close it first).
"""

from __future__ import annotations

import logging

from router import events
from router.attachments import PREFIX as STORED
from router.attachments import AttachmentStore
from router.customers import ADDRESS_KIND
from router.errors import ContactRouterError
from router.keys import Keys
from router.records import retention
from router.store import Store, text

log = logging.getLogger(__name__)


class ErasureRefused(ContactRouterError):
    """The customer cannot be erased now (unknown, or a conversation still open)."""


async def erase(
    store: Store, tenant: str, customer: str, *, by: str, reason: str = "", files: AttachmentStore | None = None
) -> dict[str, int]:
    """Erase a customer, and from `files` the stored files of their messages that nobody else's
    refer to; returns how many of each kind of record went (also in the audit entry)."""
    if store.archive is None:
        raise ErasureRefused("erasure needs the archive (DATABASE_URL): it keeps the audit entry, and old records")
    if not by:
        raise ErasureRefused("say who asks for the erasure (--by)")
    archived = await store.archive.customer_conversations(tenant, customer)
    refs: set[str] = set()
    redis_counts = await _erase_from_redis(store, tenant, customer, archived, refs)
    counts, alone = await store.archive.erase_customer(
        tenant, customer, by=by, reason=reason, redis=redis_counts, files=refs
    )
    if not any(counts.values()):
        raise ErasureRefused(f"no customer {customer} in {tenant}")
    if files is not None:  # after the commit: the audit entry says they went, and nothing refers to them now
        for ref in sorted(alone):
            try:
                await files.remove(ref)
            except (KeyError, OSError) as exc:
                log.warning("erasure of %s: could not delete %s from the attachment store: %s", customer, ref, exc)
    return counts


def describe(counts: dict[str, int]) -> str:
    """What an erasure removed, as the audit trail and the CLI say it: "2 conversations, 5 messages, ..."."""
    return ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())


async def _erase_from_redis(
    store: Store, tenant: str, customer: str, archived: list[str], files: set[str]
) -> dict[str, int]:
    """Delete the customer's keys; `archived`: their conversations the archive has (evicted ones
    may still have markers here). The stored files their messages refer to are added to `files`."""
    keys = Keys(tenant)
    record = {text(k): text(v) for k, v in (await store.redis.hgetall(keys.customer(customer))).items()}
    hot = [text(c) for c in await store.redis.zrange(keys.customer_conversations(customer), 0, -1)]
    conversations = hot + [c for c in archived if c not in hot]
    doomed = [keys.customer(customer), keys.customer_conversations(customer)]
    identities = [name[6:] for name in record if name.startswith("ident:")]
    # A web chat visitor's transcript (their messages both ways, replayed to their tabs) and state.
    visitors = [ident.partition(":")[2] for ident in identities if ident.startswith(f"{ADDRESS_KIND['webchat']}:")]
    for visitor in visitors:
        doomed += [keys.webchat_visitor(visitor), keys.webchat_history(visitor)]
    for conversation in conversations:
        fields = await store.redis.hmget(keys.conversation(conversation), "state", "attempts")
        state, attempts = (text(f) if f is not None else "" for f in fields)
        if state and state not in ("closed",):
            raise ErasureRefused(f"conversation {conversation} is {state}: close it before erasing its customer")
        doomed += [keys.conversation(conversation), keys.conversation_log(conversation)]
        doomed.append(keys.conversation_declined(conversation))
        doomed += [keys.reservation(f"{conversation}.{n}") for n in range(1, int(attempts or 0) + 1)]
        # A reply's or note's marker holds the reply itself until it expires: it goes now.
        # (Erasure is rare: a scan of the keyspace per conversation is its cost.)
        for scope in ("reply", "note"):
            doomed += [text(k) async for k in store.redis.scan_iter(match=f"{keys.seen(scope, conversation)}:*")]
        for raw in await store.redis.lrange(keys.conversation_log(conversation), 0, -1):
            entry = events.decode_history(raw)
            files.update(a.url for a in entry.attachments if a.url.startswith(STORED))
            files.update(retention.metadata_refs(entry.metadata))  # an email's HTML body and original
            if entry.kind == "out":
                doomed.append(keys.delivery(entry.id))
                provider = await store.redis.hget(keys.delivery(entry.id), "provider_id")
                if provider:
                    doomed.append(keys.provider_message(text(provider)))
    async with store.redis.pipeline(transaction=True) as pipe:
        for ident in identities:
            pipe.hget(keys.identities, ident)
        owners = await pipe.execute()
    # Their survey comments (a capped stream, router/surveys.py) and low ratings awaiting a follow-up.
    erased = set(conversations)
    comments = [
        entry_id
        for entry_id, fields in await store.redis.xrange(keys.survey_comments)
        if text(fields.get(b"conversation", b"")) in erased
    ]
    async with store.redis.pipeline(transaction=True) as pipe:
        if comments:
            pipe.xdel(keys.survey_comments, *comments)
        if conversations:
            pipe.zrem(keys.survey_followups, *conversations)
        for ident, owner in zip(identities, owners, strict=True):
            if owner is not None and text(owner) == customer:  # an address since linked to another stays theirs
                pipe.hdel(keys.identities, ident)
        pipe.delete(*doomed)
        await pipe.execute()
    return {
        "redis_conversations": len(hot),
        "redis_identities": len(identities),
        "webchat_transcripts": len(visitors),
        "survey_comments": len(comments),
    }
