"""Who can no longer be reached on Telegram: a user who blocked the bot (or whose
account is gone). Kept on the tenant's Telegram suppression list, with an
OptedOut event first, as an SMS STOP is (channels.sms.optout); a user who
unblocks the bot, or writes to it again, comes off the list with an OptedIn event.
"""

from __future__ import annotations

import logging

from router import bus, events
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

CHANNEL = "telegram"


async def is_unreachable(store: Store, tenant: str, chat_id: str) -> bool:
    return bool(await store.redis.sismember(Keys(tenant).suppression(CHANNEL), chat_id))


async def unreachable(store: Store, tenant: str, chat_id: str, reason: str, provider_id: str = "") -> None:
    """Mark a chat unreachable (idempotent): the user blocked the bot, or is gone."""
    await _move(store, tenant, chat_id, reason, provider_id, onto_list=True)


async def reachable(store: Store, tenant: str, chat_id: str, reason: str, provider_id: str = "") -> None:
    """Take a chat off the list (idempotent): the user unblocked the bot or wrote to it."""
    await _move(store, tenant, chat_id, reason, provider_id, onto_list=False)


async def _move(store: Store, tenant: str, chat_id: str, reason: str, provider_id: str, *, onto_list: bool) -> None:
    """The event goes first, then the list changes: a failure in between repeats the
    event on a retry rather than losing it."""
    if await is_unreachable(store, tenant, chat_id) == onto_list:
        return
    kind = events.OptedOut if onto_list else events.OptedIn
    event = kind(
        tenant=tenant,
        occurred_at=events.now_ms(),
        channel=CHANNEL,
        direction="in",
        provider_id=provider_id,
        address=chat_id,
        keyword=f"telegram:{reason}",
    )
    keys = Keys(tenant)
    await bus.publish(store, keys.events, event)
    if onto_list:
        await store.redis.sadd(keys.suppression(CHANNEL), chat_id)
        log.info("Telegram chat %s of %s is unreachable (%s)", chat_id, tenant, reason)
    else:
        await store.redis.srem(keys.suppression(CHANNEL), chat_id)
        log.info("Telegram chat %s of %s is reachable again (%s)", chat_id, tenant, reason)
