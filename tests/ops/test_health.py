"""Health and readiness: /readyz on the web process, `contactrouter health` for the others."""

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from ops import health
from router import bus
from router.app import cli, processes
from router.app import web as web_process
from router.config import load_deployment
from router.settings import Settings
from tests.factories import contact, world


async def test_ready_when_every_consumer_group_exists():
    w = await world()
    await processes.prepare(w.store, w.deployment)
    result = await health.check(w.store, w.deployment)
    assert (result.ready, result.problems) == (True, [])
    assert [(g.stream, g.group, g.exists) for g in result.groups] == [
        ("cr:{acme}:inbound", "routing", True),
        ("cr:{acme}:outbound", "dispatch", True),
    ]


async def test_a_missing_consumer_group_is_named():
    w = await world()
    result = await health.check(w.store, w.deployment)
    assert not result.ready
    assert result.problems == [
        "cr:{acme}:inbound: no consumer group routing",
        "cr:{acme}:outbound: no consumer group dispatch",
    ]


async def test_backlog_limits_turn_a_slow_group_unhealthy():
    w = await world()
    await processes.prepare(w.store, w.deployment)
    for n in range(3):
        await bus.ingest(w.store, contact(address=f"+1555123000{n}"))
    [inbound, _outbound] = await health.group_states(w.store, w.deployment)
    assert (inbound.lag, inbound.pending, inbound.length) == (3, 0, 3)
    assert (await health.check(w.store, w.deployment, max_lag=3)).ready
    lagging = await health.check(w.store, w.deployment, max_lag=2)
    assert lagging.problems == ["cr:{acme}:inbound: consumer group routing is 3 entries behind (limit 2)"]
    await w.store.redis.xreadgroup("routing", "r1", {w.keys.inbound: ">"}, count=2)
    pending = await health.check(w.store, w.deployment, max_pending=1)
    assert pending.problems == ["cr:{acme}:inbound: consumer group routing has 2 pending entries (limit 1)"]


async def test_an_unreachable_store_is_not_ready(monkeypatch):
    w = await world()

    async def refused():
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(w.store.redis, "ping", refused)
    result = await health.check(w.store, w.deployment)
    assert (result.ready, result.problems) == (False, ["store unreachable: Connection refused"])


OPS_TOKEN = "an operator's token"


async def readyz(w, token: str | None = OPS_TOKEN) -> tuple[int, dict]:
    """GET /readyz, with the operator's token as the bearer token unless token is None."""
    app = web.Application()
    app[web_process.STORE], app[web_process.DEPLOYMENT] = w.store, w.deployment
    app[web_process.SETTINGS] = Settings(ops_token=OPS_TOKEN)
    app.router.add_get("/readyz", web_process.readyz)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz", headers=headers)
        return response.status, await response.json()


async def test_readyz_tells_anyone_its_status_and_only_the_operator_its_detail():
    w = await world()
    assert await readyz(w, token=None) == (503, {"ready": False})
    assert await readyz(w, token="a guess") == (503, {"ready": False})
    status, body = await readyz(w)
    assert status == 503 and len(body["problems"]) == 2
    await processes.prepare(w.store, w.deployment)
    assert await readyz(w, token=None) == (200, {"ready": True})


async def test_readyz_answers_503_until_the_groups_exist_then_200_with_their_backlog():
    w = await world()
    status, body = await readyz(w)
    assert (status, body["ready"], len(body["problems"])) == (503, False, 2)
    await processes.prepare(w.store, w.deployment)
    status, body = await readyz(w)
    assert (status, body["ready"], body["problems"]) == (200, True, [])
    assert body["groups"][0] == {
        "tenant": "acme",
        "stream": "cr:{acme}:inbound",
        "group": "routing",
        "exists": True,
        "consumers": 0,
        "pending": 0,
        "lag": 0,
        "length": 0,
    }


async def test_the_health_command_exits_0_when_ready_and_1_when_not(redis_url, real_store, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CONTACTROUTER_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exit_status:
        await _run_cli(["health"])
    assert exit_status.value.code == 1
    assert "no consumer group routing" in capsys.readouterr().out
    await processes.prepare(real_store, load_deployment(None))
    assert await _run_cli(["health", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] and {g["group"] for g in report["groups"]} == {"routing", "dispatch"}


async def _run_cli(argv: list[str]) -> int:
    """cli.main runs its own event loop: give it a thread of its own."""
    return await asyncio.to_thread(cli.main, argv)


def dead_store_url() -> str:
    from ops.redis_server import free_port

    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


async def test_a_dead_store_is_reported_at_once_not_after_the_clients_retries():
    """The store's client retries a refused connection for about 9 s; a probe that waited
    that long would be killed by the orchestrator before it said anything."""
    from router.store import connect

    store = connect(Settings(redis_url=dead_store_url()))
    try:
        result = await asyncio.wait_for(health.check(store, load_deployment(None)), health.CHECK_TIMEOUT_S + 1)
    finally:
        await store.close()
    assert not result.ready and result.problems[0].startswith("store unreachable")


async def test_the_health_command_on_a_dead_store_exits_1_at_once(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", dead_store_url())
    monkeypatch.delenv("CONTACTROUTER_CONFIG", raising=False)
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_status:
        await _run_cli(["health"])  # (a SystemExit cannot cross asyncio.wait_for's task)
    assert exit_status.value.code == 1
    assert time.monotonic() - started < health.CHECK_TIMEOUT_S + 1, "no retries, no script load first"
    assert "problem: store unreachable" in capsys.readouterr().out


async def test_readyz_on_a_dead_store_answers_503_at_once():
    from types import SimpleNamespace

    from router.store import connect

    store = connect(Settings(redis_url=dead_store_url()))
    try:
        status, body = await asyncio.wait_for(
            readyz(SimpleNamespace(store=store, deployment=load_deployment(None))), health.CHECK_TIMEOUT_S + 1
        )
    finally:
        await store.close()
    assert (status, body["ready"]) == (503, False)
    assert body["problems"][0].startswith("store unreachable")


async def test_the_archives_backlog_is_shown_where_an_archive_runs():
    from router.keys import ARCHIVE_GROUP

    w = await world()
    await processes.prepare(w.store, w.deployment)
    await bus.ensure_group(w.store, w.keys.events, ARCHIVE_GROUP)  # the archive worker made its group
    await w.arrive()  # its events wait for the archive
    result = await health.check(w.store, w.deployment, max_lag=1)
    [archive] = [g for g in result.groups if g.group == ARCHIVE_GROUP]
    assert (archive.stream, archive.exists, archive.lag) == ("cr:{acme}:events", True, archive.length)
    assert archive.length > 1
    behind = f"cr:{{acme}}:events: consumer group archive is {archive.length} entries behind (limit 1)"
    assert result.problems == [behind]
