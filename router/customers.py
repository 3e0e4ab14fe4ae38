"""Customers: one identity across channels, linked by their addresses."""

from __future__ import annotations

import re

import phonenumbers

from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store

# Which kind of address each channel carries; sms, voice and fax share phone numbers.
ADDRESS_KIND = {
    "sms": "phone",
    "voice": "phone",
    "fax": "phone",
    "email": "email",
    "telegram": "telegram",
    "webchat": "webchat",
}


class InvalidAddress(ContactRouterError, ValueError):
    """An address that cannot identify a customer on its channel."""


# A voice caller who withheld their number: "anonymous:<CallSid>", one address per
# call, so such callers are never one customer together nor match a real number.
WITHHELD = "anonymous:"
ANONYMOUS_CALLER = re.compile(WITHHELD + r"CA[0-9a-fA-F]{32}")


def normalise(channel: str, address: str, region: str = "US") -> str:
    """The canonical form of an address: E.164 for phone numbers, lower-case email."""
    kind = ADDRESS_KIND[channel]
    address = address.strip()
    if channel == "voice" and ANONYMOUS_CALLER.fullmatch(address):
        return address
    if kind == "phone":
        try:
            number = phonenumbers.parse(address, region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidAddress(f"not a phone number: {address!r} ({exc})") from None
        if not phonenumbers.is_possible_number(number):
            raise InvalidAddress(f"not a possible phone number: {address!r}")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "email":
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            raise InvalidAddress(f"not an email address: {address!r}")
        return address.lower()
    if not address:
        raise InvalidAddress(f"empty {kind} id")
    return address


def identity(channel: str, address: str) -> str:
    """The identity key of a normalised address, e.g. 'phone:+15551230000'."""
    return f"{ADDRESS_KIND[channel]}:{address}"


async def find(store: Store, tenant: str, ident: str) -> str | None:
    value = await store.redis.hget(Keys(tenant).identities, ident)
    return value.decode() if value else None


async def link(store: Store, tenant: str, customer_id: str, ident: str) -> str | None:
    """Attach an address to a customer (an operator's decision).

    Returns the customer the address belonged to before, if another one.
    """
    keys = Keys(tenant)
    previous = await find(store, tenant, ident)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.identities, ident, customer_id)
        pipe.hset(keys.customer(customer_id), mapping={"id": customer_id, f"ident:{ident}": "1"})
        if previous and previous != customer_id:
            pipe.hdel(keys.customer(previous), f"ident:{ident}")
        await pipe.execute()
    return previous if previous != customer_id else None


async def merge(store: Store, tenant: str, keep: str, absorb: str) -> None:
    """Fold one customer into another: identities and conversation history move, in Redis and
    then in the archive (the conversations only it holds too). Running it again finishes a merge
    the archive was away for (Redis has nothing left to move; the archive does it then)."""
    keys = Keys(tenant)
    record = await store.redis.hgetall(keys.customer(absorb))
    idents = [k.decode()[6:] for k in record if k.startswith(b"ident:")]
    conversations = await store.redis.zrange(keys.customer_conversations(absorb), 0, -1, withscores=True)
    async with store.redis.pipeline(transaction=True) as pipe:
        for ident in idents:
            pipe.hset(keys.identities, ident, keep)
            pipe.hset(keys.customer(keep), f"ident:{ident}", "1")
        for conversation, score in conversations:
            pipe.zadd(keys.customer_conversations(keep), {conversation: score})
            pipe.hset(keys.conversation(conversation.decode()), "customer", keep)
        for field in ("open_conv", "last_agent", "last_agent_at"):
            if field.encode() in record:
                pipe.hsetnx(keys.customer(keep), field, record[field.encode()])
        pipe.delete(keys.customer(absorb), keys.customer_conversations(absorb))
        pipe.hset(keys.customer(keep), "merged:" + absorb, "1")
        await pipe.execute()
    if store.archive is not None:
        await store.archive.merge_customers(tenant, keep, absorb)


async def profile(store: Store, tenant: str, customer_id: str) -> dict[str, object]:
    """A customer's identities and conversations, newest first."""
    keys = Keys(tenant)
    record = {k.decode(): v.decode() for k, v in (await store.redis.hgetall(keys.customer(customer_id))).items()}
    conversations = await store.redis.zrevrange(keys.customer_conversations(customer_id), 0, -1)
    return {
        "id": customer_id,
        "identities": sorted(k[6:] for k in record if k.startswith("ident:")),
        "last_agent": record.get("last_agent", ""),
        "conversations": [c.decode() for c in conversations],
    }
