"""Flood limits: messages per minute per visitor and per client address.

Counters are fixed one-minute windows in Redis (INCR + EXPIRE in one pipeline),
shared by every web process, so a visitor cannot dodge the limit by opening tabs
that land on other processes. A fixed window lets a burst of up to twice the
limit straddle a minute boundary; that is the price of one round trip.
"""

from __future__ import annotations

import time

from router.keys import Keys
from router.store import Store

WINDOW_S = 60


async def take(store: Store, tenant: str, quotas: list[tuple[str, str, int]], *, now: float | None = None) -> int:
    """Count one action against each (scope, who, per-minute limit); returns 0 when every
    quota allows it, else the seconds until the window turns. A refused action still
    counts, so a flood stays refused until it stops."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        for scope, who, _limit in quotas:
            key = keys.webchat_rate(scope, who, window)
            pipe.incr(key)
            pipe.expire(key, WINDOW_S * 2)
        counts = (await pipe.execute())[::2]
    if all(count <= limit for count, (_s, _w, limit) in zip(counts, quotas, strict=True)):
        return 0
    return max(1, int((window + 1) * WINDOW_S - now + 0.999))
