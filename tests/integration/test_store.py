"""The connection to Redis under bursts: more concurrent requests than the pool
has connections wait for one, instead of failing (webhooks must not get 500s)."""

from __future__ import annotations

import asyncio

from router.settings import Settings
from router.store import MAX_CONNECTIONS, connect


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(redis_url: str) -> None:
    store = connect(Settings(redis_url=redis_url))
    try:
        burst = MAX_CONNECTIONS + 100
        # BLPOP with a short timeout holds its connection, so the burst really needs them all at once
        results = await asyncio.gather(*(store.redis.blpop([f"nothing:{i}"], timeout=0.2) for i in range(burst)))
        assert results == [None] * burst
    finally:
        await store.close()
