"""Start a throwaway Redis Cluster of primaries on free loopback ports (tests, benchmarks)."""

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
    """N cluster-enabled redis-server processes joined into one cluster; a context manager."""

    def __init__(self, primaries: int = 3) -> None:
        if shutil.which("redis-cli") is None:
            raise RedisServerMissing("redis-cli is not installed (Debian: apt-get install redis-tools)")
        self.nodes = [
            RedisServer(extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"], port=_cluster_port())
            for _ in range(primaries)
        ]

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
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(node.port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for node in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.__exit__(*exc)
