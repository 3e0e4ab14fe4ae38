"""Opening the store: cluster seed nodes from REDIS_URL, the retry budget (REDIS_RETRY_S),
and a pool that makes a burst wait for a connection rather than fail."""

from __future__ import annotations

import asyncio

from router.settings import Settings
from router.store import cluster_nodes, connect, retry_policy


def test_cluster_seed_nodes_share_the_first_urls_scheme_and_credentials():
    nodes, options = cluster_nodes("rediss://:secret@10.0.0.1:7000, 10.0.0.2:7001,redis://10.0.0.3")
    assert [(node.host, node.port) for node in nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 6379)]
    assert options == {"password": "secret", "ssl": True}


def test_the_retry_budget_is_waited_out_in_full_before_a_command_fails():
    for budget in (0.2, 20.0):
        policy = retry_policy(budget)
        waits = [policy._backoff.compute(failure) for failure in range(1, policy._retries + 1)]
        assert sum(waits) >= budget > sum(waits[:-1])
    assert Settings().redis_retry_s > 15, "above Redis Cluster's default node timeout"


async def test_a_burst_beyond_the_embedded_stores_pool_waits_for_a_connection():
    store = connect(Settings())
    # Each blocking pop holds its connection: twice as many at once as the pool holds.
    burst = 2 * store.redis.connection_pool.max_connections
    popped = await asyncio.gather(*(store.redis.blpop(f"k{n}", timeout=0.05) for n in range(burst)))
    assert popped == [None] * burst
    await store.close()
