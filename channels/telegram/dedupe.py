"""update_id de-duplication, by membership in a window of the updates already stored.

Telegram redelivers an update its webhook did not acknowledge (and getUpdates
repeats every unconfirmed one), and the order of redeliveries is not a promise:
so an update is dropped because its update_id is in the set, never because it is
lower than the last one seen. The set keeps a week of update_ids, scored by when
they were stored, and forgets older ones as new ones arrive.
"""

from __future__ import annotations

import time

from router.keys import Keys
from router.store import Store

WINDOW_S = 7 * 24 * 3600  # Telegram keeps an unconfirmed update for 24 hours; a week is ample


async def seen(store: Store, tenant: str, bot_id: str, update_id: int) -> bool:
    """Was this update already stored?"""
    return await store.redis.zscore(Keys(tenant).telegram_updates(bot_id), str(update_id)) is not None


async def remember(store: Store, tenant: str, bot_id: str, update_id: int) -> None:
    """Note an update as stored (after its effect is durable), and forget those past the window."""
    key = Keys(tenant).telegram_updates(bot_id)
    now = time.time()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {str(update_id): now})
        pipe.zremrangebyscore(key, "-inf", now - WINDOW_S)
        pipe.expire(key, WINDOW_S)
        await pipe.execute()
