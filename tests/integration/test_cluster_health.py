"""Readiness per shard: a Redis Cluster primary that is down makes its own tenants
unserved (reported, by name), not every tenant, and is not mistaken for a missing stream."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ops import health
from ops.redis_cluster import RedisClusterNodes
from ops.redis_server import RedisServerMissing
from router.app import processes
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from tests.factories import deployment

TENANTS = "".join(f'[[tenants]]\nid = "{t}"\n[[tenants.queues]]\nid = "support"\n' for t in ("acme", "stark", "wayne"))


@pytest.fixture
def cluster() -> Iterator[RedisClusterNodes]:
    """Three primaries, no replicas, and a node timeout longer than the test: the dead
    primary's shard stays away, and the others keep answering."""
    try:
        nodes = RedisClusterNodes(primaries=3, node_timeout_ms=120_000)
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: cluster tests must run in CI", pytrace=False)
        pytest.skip(f"cluster test needs redis-server and redis-cli: {exc}")
    with nodes:
        yield nodes


async def test_a_primary_that_is_down_makes_only_its_tenants_unserved(cluster):
    config = deployment(TENANTS)
    store = connect(Settings(redis_url=cluster.urls, cluster=True))
    try:
        await processes.prepare(store, config)
        await health.beat(store, config, list(health.WATCHED_ROLES), "worker-1")
        assert (await health.check(store, config)).status == "ready"
        owner = store.redis.get_node_from_key(Keys("acme").base)
        next(node for node in cluster.nodes if node.port == int(owner.port)).kill()

        # the other shards' beats go on
        assert len(await health.beat(store, config, list(health.WATCHED_ROLES), "worker-1")) == 1
        result = await health.check(store, config)
    finally:
        await store.close()
    assert (result.ready, result.status) == (True, "degraded")
    [problem] = result.problems
    assert problem.startswith("acme: its shard is unreachable: ")
    assert {(g.tenant, g.exists) for g in result.groups} == {
        ("acme", False), ("stark", True), ("wayne", True),
    }  # fmt: skip
    assert {(w.tenant, w.alive) for w in result.workers} == {("stark", True), ("wayne", True)}
