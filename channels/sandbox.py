"""The sandbox transport: with no provider configured, a channel's messages are
kept in the tenant's outbox stream (`contactrouter outbox` lists it) instead of
leaving the building, so the whole product runs offline.
"""

from __future__ import annotations

from channels.transport import Reconciled
from router import atomic, events
from router.keys import Keys
from router.store import Store

MARKER_TTL_S = 7 * 24 * 3600


async def keep_once(store: Store, tenant: str, message_id: str, *, provider_id: str, payload: bytes) -> bool:
    """Add a message to the tenant's outbox unless it is there already (outbox_send.lua:
    the marker and the entry in one step, so a replayed send adds nothing); True if added."""
    keys = Keys(tenant)
    return await atomic.outbox_send(
        store,
        marker=keys.seen("outbox", message_id),
        outbox=keys.outbox,
        provider_id=provider_id,
        message=payload,
        ttl_s=MARKER_TTL_S,
    )


class SandboxSender:
    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel

    async def send(self, message: events.OutboundMessage) -> str:
        provider_id = f"sandbox-{message.id}"
        await keep_once(self.store, message.tenant, message.id, provider_id=provider_id, payload=events.encode(message))
        return provider_id

    async def close(self) -> None:
        """Nothing held between sends."""

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        provider_id = await self.store.redis.get(Keys(message.tenant).seen("outbox", message.id))
        return ("sent", provider_id.decode()) if provider_id else ("not_sent", "")


async def outbox(store: Store, tenant: str, count: int = 50) -> list[tuple[str, str, events.OutboundMessage]]:
    """The newest messages in a tenant's outbox: (entry id, provider id, message)."""
    rows = await store.redis.xrevrange(Keys(tenant).outbox, count=count)
    return [
        (entry_id.decode(), fields[b"provider_id"].decode(), events.decode_outbound(fields[b"e"]))
        for entry_id, fields in rows
    ]
