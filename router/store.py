"""Connections: a Redis (or Redis Cluster) from REDIS_URL, or the embedded store.

The embedded store is fakeredis with Lua (lupa); `contactrouter up` also serves
it over TCP on localhost so the CLI in another terminal can reach it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import fakeredis
import redis.asyncio as aioredis
from fakeredis import aioredis as fake_aioredis
from fakeredis._clients._tcp_server import TCPFakeRequestHandler  # no public name; see _BlockingReadHandler
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url

# The asyncio Retry: redis.retry.Retry (the sync one) returns the coroutine unawaited
# from call_with_retry, so an asyncio client given it never retried anything.
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.connections import WaitingPool
from router.keys import Keys
from router.scripts import Scripts
from router.settings import Settings

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 200  # per process
POOL_WAIT_S = 10.0  # how long a request waits for a free connection before it fails
PROBE_TIMEOUT_S = 1.0  # the probe client's connect and read timeout (health checks, start-up)
# A cluster client's read timeout (redis-py's default is 5 s): above every blocking read,
# or an idle live feed (XREAD BLOCK 5000) times out and is logged as "store unreachable".
SOCKET_TIMEOUT_S = 10.0
RETRY_BASE_S, RETRY_CAP_S = 0.05, 1.0  # the reconnect backoff: 0.1 s, 0.2 s, ... then every second

# What an unreachable or restarting store raises (BusyLoadingError, while an AOF
# loads, is a ConnectionError; a socket error redis-py did not wrap is a builtin
# ConnectionError; a cluster with no reachable node raises RedisClusterException,
# which is no RedisError); loops wait these out quietly.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    RedisClusterException,
    ClusterDownError,
)


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes: clients run without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """A client for the deployment's Redis and the routing scripts registered on it."""

    def __init__(
        self,
        redis: Any,
        *,
        embedded: bool = False,
        cluster: bool = False,
        probe: Any = None,
        read_timeout_s: float | None = None,
    ) -> None:
        self.redis = redis
        # The client's socket read timeout (None: none): every blocking read must end before it
        # (blocking), or an idle stream would read as a store that does not answer.
        self.read_timeout_s = read_timeout_s
        # A client that fails fast (short timeout, no retries) for questions whose answer
        # is "is the store there?": /readyz, `contactrouter health`, start-up's wait.
        self.probe = redis if probe is None else probe
        self.embedded = embedded
        self.cluster = cluster
        self.scripts = Scripts(redis)
        # The system of record behind Redis (router.records.archive.Archive) when DATABASE_URL
        # is set; router.conversations reads there what Redis no longer holds.
        self.archive: Any = None

    async def load_scripts(self) -> None:
        await self.scripts.load(self.redis)

    def blocking(self, block_ms: int) -> int:
        """How long a blocking read (XREAD/XREADGROUP BLOCK) may wait: `block_ms`, but ending a
        second (or half the timeout, when that is under 2 s) before the client's read timeout,
        which REDIS_URL's `socket_timeout` may set as low as it likes."""
        if not self.read_timeout_s:
            return block_ms
        margin_s = min(1.0, self.read_timeout_s / 2)
        return max(1, min(block_ms, int((self.read_timeout_s - margin_s) * 1000)))

    def keys(self, tenant: str) -> Keys:
        return Keys(tenant)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.probe is not self.redis:
            await self.probe.aclose()


class StoreOutage:
    """How a loop rides out an unreachable store: one warning when it goes, one line
    when it is back, and a capped exponential wait between attempts (not a traceback
    every poll)."""

    def __init__(self, what: str, *, first_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.what = what
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0
        self._since = 0.0

    def failed(self, error: BaseException, *, every_attempt: bool = False) -> float:
        """Count a failed attempt; returns how long to wait before the next one."""
        self.failures += 1
        wait = min(self.cap_s, self.first_s * 2 ** (self.failures - 1))
        if self.failures == 1:
            self._since = time.monotonic()
        if self.failures == 1 or every_attempt:
            log.warning(
                "%s: store unreachable, retrying (attempt %d, next in %.1f s): %s",
                self.what,
                self.failures,
                wait,
                _reason(error),
            )
        return wait

    def recovered(self) -> None:
        """An attempt succeeded: say so once if the store had been away."""
        if self.failures:
            log.info(
                "%s: store back after %.1f s and %d failed attempts",
                self.what,
                time.monotonic() - self._since,
                self.failures,
            )
        self.failures = 0


async def read_streams(
    store: Store, positions: dict[str, str], outage: StoreOutage, *, count: int, block_ms: int
) -> list:
    """One XREAD of `positions` for a loop that follows streams for as long as it
    runs: a store outage waits as `outage` says, any other failure is logged and
    waits a second, and both return no rows, so the loop simply reads again."""
    try:
        rows = await store.redis.xread(positions, count=count, block=store.blocking(block_ms))
    except asyncio.CancelledError:
        raise
    except STORE_ERRORS as exc:
        await asyncio.sleep(outage.failed(exc))
        return []
    except Exception:
        log.exception("%s: reading %s failed; retrying", outage.what, ", ".join(positions))
        await asyncio.sleep(1.0)
        return []
    outage.recovered()
    return rows or []


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def retry_policy(budget_s: float) -> Retry:
    """Reconnect with backoff for at least `budget_s` seconds of waiting (REDIS_RETRY_S): a
    restarted Redis (AOF) or a cluster failing over is waited out, not an error. Only the
    waits count, not the attempts' own timeouts, so a command gives up a little later."""
    backoff = ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S)
    retries, waited = 0, 0.0
    while waited < budget_s:
        retries += 1
        waited += backoff.compute(retries)
    return Retry(backoff, retries=retries)


def cluster_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """REDIS_URL's seed nodes and the client options they share. Nodes are split by commas,
    each a URL or host:port (`redis://:pw@a:7000,b:7000,c:7000`); the first one's scheme,
    credentials and query options apply to every node."""
    given = [part.strip() for part in url.split(",") if part.strip()]
    options = parse_url(given[0])
    scheme = given[0].split("://", 1)[0]
    nodes = []
    for part in given:
        parsed = parse_url(part if "://" in part else f"{scheme}://{part}")
        nodes.append(ClusterNode(parsed.get("host", "localhost"), int(parsed.get("port", 6379))))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return nodes, options


def connect(settings: Settings, *, embedded_server: fakeredis.FakeServer | None = None) -> Store:
    """Open the store the settings name; without REDIS_URL, the embedded one."""
    if settings.redis_url is None:
        server = embedded_server or fakeredis.FakeServer()
        # A pool that waits for a free connection: a burst of requests (200 logins at once)
        # beyond the pool's size waits a moment instead of raising MaxConnectionsError.
        client = fake_aioredis.FakeRedis(
            server=server, connection_pool_class=aioredis.BlockingConnectionPool, max_connections=MAX_CONNECTIONS
        )
        return Store(client, embedded=True)
    retry = retry_policy(settings.redis_retry_s)
    errors = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]
    # No retries and a short timeout: a probe that waited out an outage would answer nothing.
    fast = {"socket_timeout": PROBE_TIMEOUT_S, "socket_connect_timeout": PROBE_TIMEOUT_S}
    if settings.cluster:
        # Several seed nodes: the process starts (and restarts) while any one of them is down.
        nodes, options = cluster_nodes(settings.redis_url)
        options = {"socket_timeout": max(SOCKET_TIMEOUT_S, settings.block_ms / 1000 + 5), **options}  # the URL's wins
        client = RedisCluster(
            startup_nodes=nodes, retry=retry, retry_on_error=errors, max_connections=MAX_CONNECTIONS, **options
        )
        probe = RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **{**options, **fast})
        return Store(client, cluster=True, probe=probe, read_timeout_s=_seconds(options.get("socket_timeout")))
    # A blocking pool: a burst of webhooks beyond the pool's size waits a moment
    # for a connection instead of failing (redis-py's default pool raises).
    pool = WaitingPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        retry=retry,
        retry_on_error=errors,
        health_check_interval=30,
    )
    probe_pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=4, timeout=PROBE_TIMEOUT_S, retry=Retry(NoBackoff(), 0), **fast
    )
    return Store(
        aioredis.Redis(connection_pool=pool),
        probe=aioredis.Redis.from_pool(probe_pool),
        read_timeout_s=_seconds(pool.connection_kwargs.get("socket_timeout")),
    )


def _seconds(value: Any) -> float | None:
    return float(value) if value else None


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
