"""Pacing: token buckets in Redis, so every campaigns worker draws from one rate.

A campaign has its own bucket (its `pacing.per_minute`), and a tenant may cap a
channel across all its campaigns (`contactrouter campaign pace`). A batch takes
what every bucket it needs can give, in one script call: atomic, so two workers
never spend the same token.
"""

from __future__ import annotations

from router.keys import Keys
from router.store import Store, text
from workers.campaigns import scripts
from workers.campaigns.scripts import Bucket

LIMITS = "limits"  # the bucket name of the hash holding the tenant's per-channel limits


def campaign_bucket(tenant: str, campaign: str, per_minute: int, burst: int | None) -> Bucket:
    return Bucket(Keys(tenant).rate_bucket(f"cmp:{campaign}"), per_minute, burst or max(1, per_minute // 60))


def channel_bucket(tenant: str, channel: str, per_minute: int) -> Bucket:
    return Bucket(Keys(tenant).rate_bucket(f"channel:{channel}"), per_minute, max(1, per_minute // 60))


async def channel_limits(store: Store, tenant: str) -> dict[str, int]:
    """The tenant's messages-per-minute limit per channel (channels without one: none)."""
    raw = await store.redis.hgetall(Keys(tenant).rate_bucket(LIMITS))
    return {text(k): int(v) for k, v in raw.items()}


async def set_channel_limit(store: Store, tenant: str, channel: str, per_minute: int) -> None:
    """0 lifts the limit."""
    key = Keys(tenant).rate_bucket(LIMITS)
    if per_minute <= 0:
        await store.redis.hdel(key, channel)
    else:
        await store.redis.hset(key, channel, per_minute)


async def take(store: Store, tenant: str, want: int, buckets: list[Bucket]) -> tuple[int, int]:
    """Take up to `want` tokens from every bucket at once: (granted, ms until the next
    token when none was granted)."""
    if not buckets or want <= 0:
        return want, 0
    return await scripts.take_tokens(store, tenant, want=want, buckets=buckets)


async def give_back(store: Store, tenant: str, count: int, buckets: list[Bucket]) -> None:
    """Return unspent tokens (recipients that were claimed but not sent)."""
    if count <= 0 or not buckets:
        return
    await scripts.give_tokens(store, tenant, count=count, buckets=buckets)
