"""How a customer is called where a person reads: the name an agent gave them, else the
newest name a channel gave (pre-chat form, email display name, Telegram profile), else
their address written for people (a formatted phone number), never an internal id."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

import phonenumbers

from router.customers import ADDRESS_KIND, WITHHELD
from router.keys import Keys
from router.store import Store, text

MAX_CHARS = 100  # a name longer than this is someone's message typed in the wrong box


def clean(name: str) -> str:
    """A name as a channel gave it, fit to show: one line, no control or format
    characters (bidi overrides included), whitespace collapsed, at most MAX_CHARS."""
    kept = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return " ".join(kept.split())[:MAX_CHARS].strip()


def formatted_address(channel: str, address: str) -> str:
    """An address as people write it: +1 555-123-0000 rather than +15551230000; "" for
    the ids of web chat visitors and Telegram chats, which mean nothing to a person."""
    kind = ADDRESS_KIND.get(channel)
    if kind in ("webchat", "telegram"):
        return ""
    if kind != "phone":
        return address
    if address.startswith(WITHHELD):
        return "Withheld number"
    try:
        number = phonenumbers.parse(address)
    except phonenumbers.NumberParseException:
        return address
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def display(customer: Mapping[str, str], channel: str, address: str) -> str:
    """What to call a customer (their record's fields) reached on channel at address."""
    name = customer.get("name") or customer.get("channel_name")
    if name:
        return name
    if ADDRESS_KIND.get(channel) == "webchat":
        # no name asked or given: a visitor, told apart from others by a few characters
        return "Web visitor " + address.removeprefix("v-")[:4]
    if ADDRESS_KIND.get(channel) == "telegram":
        return "Telegram user"
    return formatted_address(channel, address)


def known_name(customer: Mapping[str, str]) -> str:
    """The customer's name if anyone gave one, else "" (for text the customer reads)."""
    return customer.get("name") or customer.get("channel_name") or ""


NAME_FIELDS = ("name", "channel_name")


async def records(store: Store, tenant: str, customer_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """The name fields of several customers of a tenant, in one round trip."""
    ids = list(dict.fromkeys(c for c in customer_ids if c))
    if not ids:
        return {}
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        for customer_id in ids:
            pipe.hmget(keys.customer(customer_id), *NAME_FIELDS)
        rows = await pipe.execute()
    return {
        customer_id: {field: text(value) for field, value in zip(NAME_FIELDS, row, strict=True) if value}
        for customer_id, row in zip(ids, rows, strict=True)
    }


async def of_conversation(store: Store, tenant: str, record: Mapping[str, str]) -> str:
    """What to call the customer of one conversation (its record's fields)."""
    customer = (await records(store, tenant, [record.get("customer", "")])).get(record.get("customer", ""), {})
    return display(customer, *where(record))


def where(record: Mapping[str, str]) -> tuple[str, str]:
    """The channel and address a conversation last heard its customer on."""
    return (
        record.get("last_channel") or record.get("channel", ""),
        record.get("last_address") or record.get("address", ""),
    )


async def rename(store: Store, tenant: str, customer_id: str, name: str) -> str:
    """An agent's correction of a customer's name; "" clears it (the channel's shows again).
    Returns the name stored."""
    name = clean(name)
    key = Keys(tenant).customer(customer_id)
    if name:
        await store.redis.hset(key, "name", name)
    else:
        await store.redis.hdel(key, "name")
    return name
