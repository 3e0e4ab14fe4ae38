"""Conversations: their state, their history, and what agents add to them."""

from __future__ import annotations

import msgspec

from router import assign, atomic, events
from router.customers import ADDRESS_KIND, identity
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store, text

SEEN_TTL_S = 7 * 24 * 3600  # how long an idempotency key is remembered
LOST_ANSWER_TTL_S = 3600  # a keyless write's marker only has to outlive the client's retry


class NotFound(ContactRouterError, LookupError):
    """No such conversation for this tenant (a request for another tenant's gets this too)."""


class AddressError(ContactRouterError, ValueError):
    """A reply has no address of the customer to go to."""


def _decode(record: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in record.items()}


def complete(conversation: str, record: dict[str, str]) -> dict[str, str]:
    """A conversation's stored fields with what intake.lua leaves out of a new one
    because it goes without saying: its id (the key's), escalation level 0, where and
    when the customer last wrote (its first message: its channel, address and time),
    and the tenant's address they wrote to when there was none."""
    return {
        "id": conversation,
        "level": "0",
        "last_channel": record.get("channel", ""),
        "last_address": record.get("address", ""),
        "last_message_at": record.get("created_at", ""),
        "tenant_address": "",
        **record,
    }


# Redis holds the hot set; a conversation closed long enough ago is only in the archive
# (router/records), when there is one (store.archive). These three read both, so no
# caller needs to know where a record lives.


async def get(store: Store, tenant: str, conversation: str) -> dict[str, str]:
    record = await store.redis.hgetall(Keys(tenant).conversation(conversation))
    if record:
        return complete(conversation, _decode(record))
    if store.archive is not None and (archived := await store.archive.conversation(tenant, conversation)):
        return complete(conversation, archived)
    raise NotFound(conversation)


async def history(store: Store, tenant: str, conversation: str) -> list[events.HistoryEntry]:
    raw = await store.redis.lrange(Keys(tenant).conversation_log(conversation), 0, -1)
    if not raw and store.archive is not None:  # a history is never empty while Redis holds it
        return await store.archive.history(tenant, conversation)
    return [events.decode_history(item) for item in raw]


async def customer_history(store: Store, tenant: str, customer: str) -> list[tuple[str, list[events.HistoryEntry]]]:
    """Every conversation of a customer, oldest first, with its messages: one history across channels."""
    keys = Keys(tenant)
    hot = [c.decode() for c in await store.redis.zrange(keys.customer_conversations(customer), 0, -1)]
    conversations = hot
    if store.archive is not None:
        from router.records.archive import ArchiveUnavailable

        try:
            archived = await store.archive.customer_conversations(tenant, customer)
        except ArchiveUnavailable:
            archived = []  # a hot conversation's page still opens, with the history Redis holds
        # The archive's are older than any Redis still holds, except those it holds too.
        conversations = [c for c in archived if c not in hot] + hot
    return [(c, await history(store, tenant, c)) for c in conversations]


async def participants(
    store: Store, tenant: str, record: dict[str, str], entries: list[events.HistoryEntry] | None = None
) -> list[tuple[str, str]]:
    """The others in a conversation, as (channel, address), first seen first: each address
    its messages came from, or (email) were also sent to (metadata "cc"), that is not one
    of its customer's. An agent answers or copies them only by choosing to: a colleague on
    Cc who replied into the thread does not become who the replies go to."""
    if entries is None:
        entries = await history(store, tenant, record["id"])
    customer = await store.redis.hkeys(Keys(tenant).customer(record["customer"]))
    own = {text(k).removeprefix("ident:") for k in customer if text(k).startswith("ident:")}
    found: dict[tuple[str, str], None] = {}
    for entry in entries:
        if entry.kind != "in" or entry.channel not in ADDRESS_KIND:
            continue
        addresses = [entry.address, *(entry.metadata.get("cc", "").split(",") if entry.channel == "email" else ())]
        for address in filter(None, (a.strip() for a in addresses)):
            if identity(entry.channel, address) not in own:
                found.setdefault((entry.channel, address), None)
    return list(found)


async def add_note(
    store: Store, tenant: str, conversation: str, agent: str, text: str, *, idempotency_key: str = ""
) -> events.HistoryEntry:
    """Add an agent's note to the history, once: a retried command (the store's client
    after a lost answer) or a resubmitted form with the same key adds nothing more."""
    record = await get(store, tenant, conversation)
    entry = events.HistoryEntry(
        id=events.new_id(),
        kind="note",
        channel=record.get("channel", ""),
        occurred_at=events.now_ms(),
        body=text,
        agent=agent,
    )
    keys = Keys(tenant)
    encoded = msgspec.msgpack.encode(entry)
    seen = keys.seen("note", f"{conversation}:{idempotency_key or entry.id}")
    first = await _record_once(store, keys, conversation, seen, encoded, encoded, keyed=bool(idempotency_key))
    return events.decode_history(first)


async def send_reply(
    store: Store,
    tenant: str,
    conversation: str,
    agent: str,
    body: str,
    *,
    channel: str | None = None,
    address: str | None = None,
    subject: str = "",
    idempotency_key: str = "",
    attachments: tuple[events.Attachment, ...] = (),  # e.g. a file the agent attached ("store:<sha256>")
    cc: tuple[str, ...] = (),
) -> events.OutboundMessage:
    """Record an agent's reply in the history and queue it for delivery, in one transaction.

    The reply leaves through the channel and address the customer last wrote from, unless
    the agent picks another address of the same customer, or chooses someone else in the
    conversation (`participants`: a colleague on Cc who replied), who is never the default.
    An email may copy (`cc`) others in the conversation. A client that may retry (a
    browser resubmitting, a CLI rerun) passes an idempotency key: the same key gives back
    the first reply instead of sending a second one.
    """
    keys = Keys(tenant)
    record = await get(store, tenant, conversation)
    channel, address, cc = await _recipients(store, keys, record, channel, address, cc)
    # answer from the number or address the customer wrote to (a tenant may have several)
    sender = record.get("tenant_address", "") if channel == record.get("last_channel") else ""
    message = events.OutboundMessage(
        id=events.new_id(),
        tenant=tenant,
        channel=channel,
        to=address,
        sender=sender,
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=body,
        subject=subject,
        agent=agent,
        attachments=attachments,
        cc=cc,
    )
    payload = events.encode(message)
    entry = events.HistoryEntry(
        id=message.id,
        kind="out",
        channel=channel,
        occurred_at=message.occurred_at,
        body=body,
        subject=subject,
        address=address,
        agent=agent,
        attachments=attachments,
        metadata={"cc": ", ".join(cc)} if cc else {},
    )
    added = events.MessageAdded(
        tenant=tenant,
        occurred_at=message.occurred_at,
        channel=channel,
        direction="out",
        conversation=conversation,
        message=message.id,
        customer=record["customer"],
        agent=agent,
    )

    # Without a key the marker is the message's own id: it still tells a lost answer
    # (recorded: return it) from a first run, when the client sends the script again.
    seen = keys.seen("reply", f"{conversation}:{idempotency_key or message.id}")
    first = await _record_once(
        store,
        keys,
        conversation,
        seen,
        payload,
        msgspec.msgpack.encode(entry),
        keyed=bool(idempotency_key),
        reply_at=str(message.occurred_at),
        outbound=payload,
        added=events.encode(added),
    )
    return events.decode_outbound(first)


async def _recipients(
    store: Store, keys: Keys, record: dict[str, str], channel: str | None, address: str | None, cc: tuple[str, ...]
) -> tuple[str, str, tuple[str, ...]]:
    """(channel, address, cc) of a reply, checked: by default where the customer last wrote;
    another address only if it is the customer's, or one of the conversation's participants
    the agent chose; copies (email only) only to the conversation's people. AddressError if not."""
    chosen = bool(address)
    channel = channel or record.get("last_channel") or record["channel"]
    address = address or (record.get("last_address") if channel == record.get("last_channel") else None)
    if not address:
        raise AddressError(f"no {channel} address known for this customer; give one")

    async def customers_own(channel: str, address: str) -> bool:
        owner = await store.redis.hget(keys.identities, identity(channel, address))
        return owner is not None and owner.decode() == record["customer"]

    others: list[tuple[str, str]] = []
    if not await customers_own(channel, address):
        others = await participants(store, keys.shard, record)
        # never by default: a conversation from before intake told participants apart may
        # have one as its last address
        if not chosen or (channel, address) not in others:
            raise AddressError(f"{address} is not an address of this conversation's customer")
    cc = tuple(dict.fromkeys(a.strip().lower() for a in cc if a.strip() and a.strip().lower() != address))
    if cc and channel != "email":
        raise AddressError("only an email can be copied to others")
    for copied in cc:
        others = others or await participants(store, keys.shard, record)
        if ("email", copied) not in others and not await customers_own("email", copied):
            raise AddressError(f"{copied} is not in this conversation: only its participants may be copied")
    return channel, address, cc


async def _record_once(
    store: Store,
    keys: Keys,
    conversation: str,
    seen: str,
    value: bytes,
    entry: bytes,
    *,
    keyed: bool,
    reply_at: str = "",
    outbound: bytes = b"",
    added: bytes = b"",
) -> bytes:
    """Add `entry` to the history (and, given `reply_at`, queue the reply) in one script
    that also sets the marker `seen` to `value`, unless the marker exists; returns the
    marker's value (ours, or the first run's).

    The store's client sends a command again when the connection dropped; had the first
    run happened and only its answer been lost, the marker set in the same step makes
    the second run add nothing (a reply sent twice) and return the first's value.
    """
    ttl = SEEN_TTL_S if keyed else LOST_ANSWER_TTL_S
    _wrote, first = await atomic.record_once(
        store,
        keys.shard,
        conversation,
        seen=seen,
        value=value,
        ttl_s=ttl,
        entry=entry,
        reply_at=reply_at,
        outbound=outbound,
        added=added,
    )
    return first


async def close_unanswered(store: Store, tenant: str, conversation: str, disposition: str) -> bool:
    """Close a conversation nobody took (a caller hung up, a callback replaced the
    call): any offer is withdrawn and its agent's capacity given back at once.
    Returns False if it was already closed or had been taken by an agent."""
    outcome, freed = await atomic.close(store, tenant, conversation, disposition=disposition, only_unanswered=True)
    if outcome == "unknown":
        raise NotFound(conversation)
    if outcome != "closed":
        return False  # taken by an agent meanwhile, or closed before
    if freed:
        await assign.assign_agent(store, tenant, text(freed))
    return True
