"""Connections: a Redis (or Redis Cluster) from REDIS_URL, or the embedded store.

The embedded store is fakeredis with Lua (lupa); `contactrouter up` also serves
it over TCP on localhost so the CLI in another terminal can reach it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import fakeredis
import redis.asyncio as aioredis
from fakeredis import aioredis as fake_aioredis
from fakeredis._clients._tcp_server import TCPFakeRequestHandler  # no public name; see _BlockingReadHandler
from redis.asyncio.cluster import RedisCluster

# The asyncio Retry: redis.retry.Retry (the sync one) returns the coroutine unawaited
# from call_with_retry, so an asyncio client given it never retried anything.
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.config import Settings
from router.keys import Keys
from router.scripts import Scripts

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 200  # per process
POOL_WAIT_S = 10.0  # how long a request waits for a free connection before it fails


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes: clients run without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """A client for the deployment's Redis and the routing scripts registered on it."""

    def __init__(self, redis: Any, *, embedded: bool = False, cluster: bool = False) -> None:
        self.redis = redis
        self.embedded = embedded
        self.cluster = cluster
        self.scripts = Scripts(redis)

    async def load_scripts(self) -> None:
        await self.scripts.load(self.redis)

    def keys(self, tenant: str) -> Keys:
        return Keys(tenant)

    async def close(self) -> None:
        await self.redis.aclose()


def connect(settings: Settings, *, embedded_server: fakeredis.FakeServer | None = None) -> Store:
    """Open the store the settings name; without REDIS_URL, the embedded one."""
    if settings.redis_url is None:
        server = embedded_server or fakeredis.FakeServer()
        return Store(fake_aioredis.FakeRedis(server=server), embedded=True)
    # Reconnect with backoff: a restarted Redis (AOF) is waited for, not fatal.
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8)
    errors = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]
    if settings.cluster:
        client = RedisCluster.from_url(settings.redis_url, retry=retry, retry_on_error=errors)
        return Store(client, cluster=True)
    # A blocking pool: a burst of webhooks beyond the pool's size waits a moment
    # for a connection instead of failing (redis-py's default pool raises).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        retry=retry,
        retry_on_error=errors,
        health_check_interval=30,
    )
    return Store(aioredis.Redis(connection_pool=pool))


class _BlockingReadHandler(TCPFakeRequestHandler):
    """fakeredis's TCP handler reads a non-blocking socket and drops the connection
    with BlockingIOError when a large command (a 10 kB routing script) arrives in
    pieces. CLI clients only send request/response commands, so a blocking read is
    simpler and correct."""

    def setup(self) -> None:
        super().setup()
        self.connection.setblocking(True)


class _EmbeddedTcpServer(fakeredis.TcpFakeServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, server_type="redis")
        self.RequestHandlerClass = _BlockingReadHandler
        self.daemon_threads = True


def serve_embedded(host: str, port: int) -> tuple[fakeredis.FakeServer, threading.Thread, Any]:
    """Serve a fresh embedded store on host:port (RESP over TCP) from a thread."""
    tcp = _EmbeddedTcpServer((host, port))
    thread = threading.Thread(target=tcp.serve_forever, name="embedded-redis", daemon=True)
    thread.start()
    log.info("embedded store listening on redis://%s:%d", host, port)
    return tcp.fake_server, thread, tcp
