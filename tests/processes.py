"""The product's processes as an operator runs them: `contactrouter up` and the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from ops.redis_server import free_port

T = TypeVar("T")

CLI = str(Path(sys.executable).parent / "contactrouter")


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    """`contactrouter ARGS` against the store at url, on the demo deployment."""
    env = {**os.environ, "REDIS_URL": url}
    env.pop("CONTACTROUTER_CONFIG", None)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=30)


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def running_up(env_extra: dict[str, str] | None = None, console: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """`contactrouter up` on a free web port: yields (its store's URL, the web port). Its
    console's lines are added to `console` as they come."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CONTACTROUTER_CONFIG")}
    env["PORT"] = str(port)
    env.update(env_extra or {})
    process = subprocess.Popen([CLI, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = console if console is not None else []

    def store_url() -> str | None:
        line = process.stdout.readline()
        lines.append(line)
        if process.poll() is not None:
            pytest.fail("contactrouter up exited:\n" + "".join(lines))
        match = re.search(r"store:\s+(redis://\S+)", line)
        return match.group(1) if match else None

    try:
        url = wait_for(store_url, "the embedded store's URL on the console")
        # keep reading its console so a full pipe never stalls it
        threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
        yield url, port
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, "".join(lines[-40:])
    finally:
        process.kill()
