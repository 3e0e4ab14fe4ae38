"""Health and readiness: /readyz on the web process, `contactrouter health` for the others."""

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ops import health
from router import bus
from router.app import cli, processes
from router.app import web as web_process
from router.config import load_deployment
from router.settings import Settings
from tests.factories import contact, world


async def serving(w, roles=health.WATCHED_ROLES) -> None:
    """Start-up done, and a worker of each of `roles` has beaten for every tenant."""
    await processes.prepare(w.store, w.deployment)
    await health.beat(w.store, w.deployment, list(roles), "worker-1")


async def test_ready_when_the_groups_exist_and_a_routing_dispatch_and_timers_worker_beat():
    w = await world()
    await serving(w)
    result = await health.check(w.store, w.deployment)
    assert (result.ready, result.status, result.problems) == (True, "ready", [])
    assert [(g.stream, g.group, g.exists) for g in result.groups] == [
        ("cr:{acme}:inbound", "routing", True),
        ("cr:{acme}:outbound", "dispatch", True),
    ]
    assert [(s.role, s.alive, s.last) for s in result.workers] == [
        ("routing", True, "worker-1"),
        ("dispatch", True, "worker-1"),
        ("timers", True, "worker-1"),
    ]


async def test_a_tenant_whose_routing_has_no_live_worker_is_degraded_and_named():
    """12 messages waiting and nothing reading them is not ready: the web process can still
    take webhooks (so it stays in the load balancer), but the deployment is degraded."""
    w = await world()
    await serving(w, ["dispatch", "timers"])
    for n in range(12):
        await bus.ingest(w.store, contact(address=f"+155512300{n:02d}"))
    result = await health.check(w.store, w.deployment)
    assert (result.ready, result.status) == (True, "degraded")
    assert result.problems == ["acme: no live routing worker (none beat within 15 s)"]
    assert result.groups[0].lag == 12


async def test_a_heartbeat_lapses_unless_renewed():
    w = await world()
    await serving(w)
    ttl = await w.store.redis.pttl(w.keys.worker_alive("routing"))
    assert 0 < ttl <= health.ALIVE_MS
    await w.store.redis.delete(w.keys.worker_alive("routing"))  # as Redis does once ALIVE_MS pass
    assert (await health.check(w.store, w.deployment)).status == "degraded"


async def test_a_process_beats_for_the_watched_roles_it_runs_until_it_stops(monkeypatch):
    w = await world()

    async def waits(store, deployment, settings, stop):
        await stop.wait()

    monkeypatch.setattr(processes, "roles", lambda: {"routing": waits, "timers": waits, "web": waits})
    stop = asyncio.Event()
    settings = Settings(consumer="host-1")
    roles = ["routing", "timers", "web"]
    running = asyncio.create_task(processes.run_roles(roles, w.store, w.deployment, settings, stop))
    for _ in range(500):  # until its first beat lands
        if await w.store.redis.exists(w.keys.worker_alive("timers")):
            break
        await asyncio.sleep(0.01)
    result = await health.check(w.store, w.deployment)
    assert [(s.role, s.alive, s.last) for s in result.workers] == [
        ("routing", True, "host-1"),
        ("dispatch", False, ""),
        ("timers", True, "host-1"),
    ]
    stop.set()
    assert await asyncio.wait_for(running, 5) == []


async def test_a_missing_consumer_group_is_named():
    w = await world()
    await health.beat(w.store, w.deployment, list(health.WATCHED_ROLES), "worker-1")
    result = await health.check(w.store, w.deployment)
    assert (result.ready, result.status) == (False, "unready")
    assert result.problems == [
        "cr:{acme}:inbound: no consumer group routing",
        "cr:{acme}:outbound: no consumer group dispatch",
    ]


async def test_backlog_limits_turn_a_slow_group_unhealthy():
    w = await world()
    await serving(w)
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
    assert (pending.ready, pending.status) == (True, "degraded")


async def test_lag_is_read_from_the_ids_so_a_failed_over_counter_does_not_stick(real_store):
    """A Redis 7.0 replica promoted by a failover has no entries-read counter for the group,
    and Redis's own lag then stays high after everything is delivered."""
    w = await world(store=real_store)
    await serving(w)
    for n in range(3):
        await bus.ingest(w.store, contact(address=f"+1555123000{n}"))
    await w.store.redis.xreadgroup("routing", "r1", {w.keys.inbound: ">"})
    # What the promoted replica holds: everything delivered, its entries-read counter lost.
    await w.store.redis.execute_command("XGROUP", "SETID", w.keys.inbound, "routing", "$", "ENTRIESREAD", "0")
    [redis_says] = [g for g in await w.store.redis.xinfo_groups(w.keys.inbound) if g["name"] == b"routing"]
    assert redis_says["lag"] == 3
    [inbound, _outbound] = await health.group_states(w.store, w.deployment)
    assert (inbound.lag, inbound.pending) == (0, 3)
    await bus.ingest(w.store, contact(address="+15551230009"))
    [inbound, _outbound] = await health.group_states(w.store, w.deployment)
    assert inbound.lag == 1


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
    assert await readyz(w, token=None) == (503, {"ready": False, "status": "unready"})
    assert await readyz(w, token="a guess") == (503, {"ready": False, "status": "unready"})
    status, body = await readyz(w)
    assert status == 503 and len(body["problems"]) == 5  # two groups, three roles
    await serving(w)
    assert await readyz(w, token=None) == (200, {"ready": True, "status": "ready"})


async def test_readyz_answers_503_until_the_groups_exist_then_200_with_their_backlog_and_workers():
    w = await world()
    status, body = await readyz(w)
    assert (status, body["ready"], body["status"]) == (503, False, "unready")
    await serving(w)
    status, body = await readyz(w)
    assert (status, body["ready"], body["status"], body["problems"]) == (200, True, "ready", [])
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
    assert body["workers"][0] == {"tenant": "acme", "role": "routing", "alive": True, "last": "worker-1"}


async def test_readyz_stays_200_but_says_degraded_when_no_dispatch_worker_is_alive():
    w = await world()
    await serving(w, ["routing", "timers"])
    status, body = await readyz(w)
    assert (status, body["ready"], body["status"]) == (200, True, "degraded")
    assert body["problems"] == ["acme: no live dispatch worker (none beat within 15 s)"]


async def test_the_health_command_exits_0_when_ready_and_1_when_not(redis_url, real_store, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CONTACTROUTER_CONFIG", raising=False)
    deployment = load_deployment(None)
    with pytest.raises(SystemExit) as exit_status:
        await _run_cli(["health"])
    assert exit_status.value.code == 1
    assert "no consumer group routing" in capsys.readouterr().out
    await processes.prepare(real_store, deployment)
    await health.beat(real_store, deployment, ["routing", "dispatch"], "worker-1")
    with pytest.raises(SystemExit) as exit_status:
        await _run_cli(["health"])  # the web process could serve; the timers have nobody
    assert exit_status.value.code == 1
    out = capsys.readouterr().out
    assert "acme timers: NO LIVE WORKER" in out and out.rstrip().endswith("DEGRADED")
    await health.beat(real_store, deployment, ["timers"], "worker-2")
    assert await _run_cli(["health", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ready" and {g["group"] for g in report["groups"]} == {"routing", "dispatch"}


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
    await serving(w)
    await bus.ensure_group(w.store, w.keys.events, ARCHIVE_GROUP)  # the archive worker made its group
    await w.arrive()  # its events wait for the archive
    result = await health.check(w.store, w.deployment, max_lag=1)
    [archive] = [g for g in result.groups if g.group == ARCHIVE_GROUP]
    assert (archive.stream, archive.exists, archive.lag) == ("cr:{acme}:events", True, archive.length)
    assert archive.length > 1
    behind = f"cr:{{acme}}:events: consumer group archive is {archive.length} entries behind (limit 1)"
    assert result.problems == [behind]
