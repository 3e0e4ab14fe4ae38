"""The sandbox transport: with no provider configured, a channel's messages are
kept in the tenant's outbox stream (`contactrouter outbox` lists it) instead of
leaving the building, so the whole product runs offline.
"""

from __future__ import annotations

import weakref
from typing import Any

from channels.transport import Reconciled
from router import events
from router.keys import Keys
from router.store import Store

MARKER_TTL_S = 7 * 24 * 3600

# Keep a message once: the marker and the outbox entry are written in one step, so a
# send the client replays after its answer was lost (a dropped connection, Redis
# restarting) finds the marker and adds nothing; one round trip per message, where a
# WATCH/GET/MULTI transaction took three. Registered here, as the campaign scripts
# are, beside the one caller. KEYS: marker, outbox (one hash tag).
# ARGV: provider id, encoded message, marker ttl seconds.
# Returns {1, entry id} when added, {0, ""} when already there (ingest.lua's shape).
SEND = """
if not redis.call("SET", KEYS[1], ARGV[1], "NX", "EX", tonumber(ARGV[3])) then return {0, ""} end
return {1, redis.call("XADD", KEYS[2], "*", "e", ARGV[2], "provider_id", ARGV[1])}
"""

_registered: weakref.WeakKeyDictionary[Store, Any] = weakref.WeakKeyDictionary()


def _send_script(store: Store) -> Any:
    """The send script registered on the store's client (once per store)."""
    found = _registered.get(store)
    if found is None:
        found = _registered[store] = store.redis.register_script(SEND)
    return found


class SandboxSender:
    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel

    async def send(self, message: events.OutboundMessage) -> str:
        keys = Keys(message.tenant)
        provider_id = f"sandbox-{message.id}"
        marker = keys.seen("outbox", message.id)
        await _send_script(self.store)(
            keys=[marker, keys.outbox], args=[provider_id, events.encode(message), MARKER_TTL_S]
        )
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
