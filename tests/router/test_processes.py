"""How a process runs its roles: a failed role fails the process (so a process manager
restarts it), and start-up waits for a store that is down instead of exiting."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ops.redis_server import RedisServer, RedisServerMissing, free_port
from router.app import cli, processes
from router.keys import Keys
from router.settings import Settings
from router.store import Store, StoreOutage
from tests.factories import world
from tests.processes import CLI


def fake_roles(monkeypatch: pytest.MonkeyPatch, **roles: processes.Role) -> None:
    monkeypatch.setattr(processes, "roles", lambda: roles)


async def waits(store, deployment, settings, stop: asyncio.Event) -> None:
    await stop.wait()


async def fails(store, deployment, settings, stop: asyncio.Event) -> None:
    raise RuntimeError("boom")


async def test_a_role_that_fails_stops_the_others_and_is_reported_once(monkeypatch, caplog):
    w = await world()
    fake_roles(monkeypatch, broken=fails, healthy=waits)
    failed = await asyncio.wait_for(processes.run_roles(["broken", "healthy"], w.store, w.deployment, Settings()), 5)
    assert failed == ["broken"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "role broken failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # the traceback, once


async def test_a_role_that_ends_on_its_own_is_a_failure(monkeypatch):
    w = await world()

    async def returns(store, deployment, settings, stop):
        return None

    fake_roles(monkeypatch, quitter=returns, healthy=waits)
    assert await asyncio.wait_for(
        processes.run_roles(["quitter", "healthy"], w.store, w.deployment, Settings()), 5
    ) == ["quitter"]


async def test_roles_stopped_on_request_are_no_failure(monkeypatch, caplog):
    w = await world()
    fake_roles(monkeypatch, healthy=waits)
    stop = asyncio.Event()
    running = asyncio.create_task(processes.run_roles(["healthy"], w.store, w.deployment, Settings(), stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(running, 5) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _fake_run_roles(names, store, deployment, settings, stop=None) -> list[str]:
    return list(names)  # every role failed


def test_contactrouter_run_exits_non_zero_when_a_role_failed(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.delenv("CONTACTROUTER_CONFIG", raising=False)
    monkeypatch.setattr(processes, "run_roles", _fake_run_roles)
    monkeypatch.setattr(processes, "setup_logging", lambda *a, **k: None)
    assert cli.main(["run", "timers"]) == 1


def impatient_store(url: str) -> Store:
    """A store whose client gives up at once, as the real one does after its retries
    run out: only prepare's own waiting can carry start-up through an outage."""
    fail_fast = {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 1.0}
    return Store(aioredis.Redis.from_url(url, **fail_fast), probe=aioredis.Redis.from_url(url, **fail_fast))


async def test_start_up_waits_for_a_store_that_is_down_then_prepares(monkeypatch, caplog):
    w = await world()
    port = free_port()
    store = impatient_store(f"redis://127.0.0.1:{port}/0")
    monkeypatch.setattr(processes, "StoreOutage", lambda what: StoreOutage(what, first_s=0.05, cap_s=0.2))
    caplog.set_level(logging.INFO)
    try:
        preparing = asyncio.create_task(processes.prepare(store, w.deployment, asyncio.Event()))
        await asyncio.sleep(0.5)
        assert not preparing.done(), preparing  # waited, did not exit
        try:
            server = RedisServer(port=port).start()
        except RedisServerMissing as exc:
            pytest.skip(str(exc))
        try:
            await asyncio.wait_for(preparing, 10)
            groups = await store.redis.xinfo_groups(Keys("acme").inbound)
            assert [g["name"] for g in groups] == [b"routing"]
        finally:
            server.stop()
    finally:
        await store.close()
    attempts = [r for r in caplog.records if "store unreachable" in r.getMessage()]
    assert len(attempts) >= 2 and all(r.levelno == logging.WARNING and not r.exc_info for r in attempts)
    assert any("store back" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_stop_while_waiting_for_the_store_ends_start_up_without_running_roles(monkeypatch):
    w = await world()
    store = impatient_store(f"redis://127.0.0.1:{free_port()}/0")
    started: list[str] = []

    async def records(store, deployment, settings, stop):
        started.append("role")

    fake_roles(monkeypatch, role=records)
    stop = asyncio.Event()
    try:
        running = asyncio.create_task(processes.run_roles(["role"], store, w.deployment, Settings(), stop))
        await asyncio.sleep(0.3)
        stop.set()
        assert await asyncio.wait_for(running, 5) == []
    finally:
        await store.close()
    assert started == []


def test_tasks_that_miss_their_cancel_do_not_keep_the_process_from_exiting(caplog):
    async def deaf() -> None:  # as a blocking Redis read that loses its cancel
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    async def main() -> str:
        asyncio.get_running_loop().create_task(deaf(), name="deaf-reader")
        await asyncio.sleep(0)
        return "done"

    with caplog.at_level(logging.WARNING):
        assert processes.run_to_exit(main(), grace_s=0.2) == "done"
    assert "deaf-reader" in caplog.text


def test_run_web_on_a_busy_port_exits_non_zero_promptly(redis_url: str):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = {k: v for k, v in os.environ.items() if k != "CONTACTROUTER_CONFIG"}
        env.update(REDIS_URL=redis_url, HOST="127.0.0.1", PORT=str(holder.getsockname()[1]))
        result = subprocess.run([CLI, "run", "web"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "web cannot listen on 127.0.0.1" in result.stderr
