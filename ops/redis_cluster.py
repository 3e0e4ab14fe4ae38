"""Start a throwaway Redis Cluster on free loopback ports (tests, benchmarks): primaries, and
optionally a replica of each so a killed primary fails over."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time

from ops.redis_server import RedisServer, RedisServerMissing


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too; Redis wants port <= 55535."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisClusterNodes:
    """Cluster-enabled redis-server processes joined into one cluster; a context manager.
    With `replicas`, `redis-cli --cluster create` pairs each primary with that many of the
    nodes; `node_timeout_ms` is how long a node may be unreachable before its replica
    takes over (Redis's default is 15 s)."""

    def __init__(self, primaries: int = 3, *, replicas: int = 0, node_timeout_ms: int | None = None) -> None:
        if shutil.which("redis-cli") is None:
            raise RedisServerMissing("redis-cli is not installed (Debian: apt-get install redis-tools)")
        self.replicas = replicas
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if node_timeout_ms is not None:
            extra += ["--cluster-node-timeout", str(node_timeout_ms)]
        self.nodes = [RedisServer(extra=extra, port=_cluster_port()) for _ in range(primaries * (1 + replicas))]

    @property
    def urls(self) -> str:
        """Every node, comma-separated: REDIS_URL's form for several seed nodes."""
        return ",".join(node.url for node in self.nodes)

    def states(self) -> list[str]:
        """Each running node's `cluster_state` (ok or fail)."""
        states = []
        for node in self.nodes:
            if node.process is None:
                continue
            info = subprocess.run(
                ["redis-cli", "-p", str(node.port), "cluster", "info"], capture_output=True, text=True
            ).stdout
            states += [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("cluster_state:")]
        return states

    @property
    def url(self) -> str:
        """Any node's URL: the cluster client discovers the others."""
        return self.nodes[0].url

    def start(self) -> RedisClusterNodes:
        try:
            return self._start()
        except BaseException:
            self.stop()  # no node outlives a cluster that failed to form
            raise

    def _start(self) -> RedisClusterNodes:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.states() == ["ok"] * len(self.nodes) and self._replicas_joined():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def _replicas_joined(self) -> bool:
        """Every replica has its primary's data (a failover before that would lose it)."""
        for node in self.nodes:
            info = subprocess.run(
                ["redis-cli", "-p", str(node.port), "info", "replication"], capture_output=True, text=True
            ).stdout
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.__exit__(*exc)
