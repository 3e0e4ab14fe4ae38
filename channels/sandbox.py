"""The sandbox transport: with no provider configured, a channel's messages are
kept in the tenant's outbox stream (`contactrouter outbox` lists it) instead of
leaving the building, so the whole product runs offline.
"""

from __future__ import annotations

from redis.exceptions import WatchError

from channels.transport import Reconciled
from router import events
from router.keys import Keys
from router.store import Store


class SandboxSender:
    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel

    async def send(self, message: events.OutboundMessage) -> str:
        keys = Keys(message.tenant)
        provider_id = f"sandbox-{message.id}"
        marker = keys.seen("outbox", message.id)
        while True:
            try:
                async with self.store.redis.pipeline(transaction=True) as pipe:
                    # The client replays a transaction whose answer was lost (a dropped
                    # connection, Redis restarting): that would put the message in the outbox
                    # twice. Watching the marker, it does not replay; the marker says whether
                    # the first one ran.
                    await pipe.watch(marker)
                    if await pipe.get(marker) is not None:
                        return provider_id
                    pipe.multi()
                    pipe.xadd(keys.outbox, {"e": events.encode(message), "provider_id": provider_id})
                    pipe.set(marker, provider_id, ex=7 * 24 * 3600)
                    await pipe.execute()
                return provider_id
            except WatchError:
                continue  # the connection dropped while watching: look at the marker again

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
