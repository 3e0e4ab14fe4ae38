"""Typing and read marks between a web chat visitor and the agents' inbox.

Visitor -> agents: appended to the tenant's webchat signals stream (capped), which
the inbox reads (`read_signals`). Agents -> visitor: `agent_typing` and `agent_read`
show the mark in the visitor's open tabs. Neither is kept in any history.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from channels.webchat import transcript
from router import conversations, customers
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

SIGNALS_MAXLEN = 10_000


class VisitorSignal(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["typing", "read"]
    visitor: str
    conversation: str  # the visitor's open conversation ("" before routing opened one)
    at: int
    active: bool = False  # typing
    up_to: str = ""  # read: the visitor has seen the agents' messages up to this id


_decode = msgspec.json.Decoder(VisitorSignal).decode


async def open_conversation(store: Store, tenant: str, visitor: str) -> str:
    """The visitor's open conversation, or "" when there is none yet."""
    customer = await customers.find(store, tenant, customers.identity("webchat", visitor))
    if customer is None:
        return ""
    conversation = await store.redis.hget(Keys(tenant).customer(customer), "open_conv")
    return text(conversation) if conversation else ""


async def from_visitor(store: Store, tenant: str, signal: VisitorSignal) -> str:
    """Pass a visitor's typing or read mark to the inbox; returns the stream entry id."""
    entry_id = await store.redis.xadd(
        Keys(tenant).webchat_signals, {"e": msgspec.json.encode(signal)}, maxlen=SIGNALS_MAXLEN, approximate=True
    )
    return text(entry_id)


async def read_signals(
    store: Store, tenant: str, after: str = "0-0", *, count: int = 100, block_ms: int | None = None
) -> list[tuple[str, VisitorSignal]]:
    """Visitors' signals after a stream id, oldest first (the inbox's live view reads these)."""
    reply = await store.redis.xread({Keys(tenant).webchat_signals: after}, count=count, block=block_ms)
    return [(text(entry_id), _decode(fields[b"e"])) for _stream, rows in reply or [] for entry_id, fields in rows]


async def _visitor_of(store: Store, tenant: Tenant, conversation: str) -> str:
    record = await conversations.get(store, tenant.id, conversation)
    if record.get("last_channel") != "webchat" or not record.get("last_address"):
        raise ValueError(f"conversation {conversation} is not a web chat")
    return record["last_address"]


def _agent_name(tenant: Tenant, agent: str) -> str:
    return next((a.name or a.id for a in tenant.agents if a.id == agent), agent)


async def agent_typing(store: Store, tenant: Tenant, conversation: str, agent: str, active: bool = True) -> None:
    """Show (or clear) "<agent> is typing" in the visitor's open tabs."""
    visitor = await _visitor_of(store, tenant, conversation)
    item = transcript.ChatItem(type="typing", active=active, agent=_agent_name(tenant, agent))
    await transcript.show(store, tenant.id, visitor, item)


async def agent_read(store: Store, tenant: Tenant, conversation: str, up_to: str) -> None:
    """The agents have read the visitor's messages up to `up_to` (a message id): the
    widget marks them read, now and after a reload."""
    visitor = await _visitor_of(store, tenant, conversation)
    await store.redis.hset(Keys(tenant.id).webchat_visitor(visitor), "agent_read", up_to)
    await transcript.show(store, tenant.id, visitor, transcript.ChatItem(type="read", up_to=up_to))
