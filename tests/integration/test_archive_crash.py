"""An archive worker killed with SIGKILL in the middle of a batch loses and doubles nothing,
and one whose PostgreSQL goes away holds its batch until it is back.

Two `contactrouter run archive` processes follow the events streams while conversations
are opened, answered and closed. One is frozen while it holds entries it has read and
not acknowledged, then killed; the survivor takes them over once idle for
CONTACTROUTER_CLAIM_IDLE_MS. At the end the archive holds each events entry once and
each conversation as Redis holds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from ops.postgres_server import PostgresMissing, PostgresServer
from router import agents, conversations
from router.keys import ARCHIVE_GROUP, Keys
from router.records import migrate
from router.store import text
from tests.factories import contact, world

pytestmark = pytest.mark.timeout(240)

CONVERSATIONS = 240

DEPLOYMENT = """
[[tenants]]
id = "alpha"
entry = { default = "front" }
wrapup_seconds = 0

[[tenants.queues]]
id = "front"

[[tenants.agents]]
id = "ann"
capacity = { sms = 50, total = 50 }

[[tenants]]
id = "beta"
entry = { default = "back" }
wrapup_seconds = 0

[[tenants.queues]]
id = "back"

[[tenants.agents]]
id = "ben"
capacity = { sms = 50, total = 50 }
"""


async def archive_pending(store, tenants: list[str], consumer: str | None = None) -> int:
    total = 0
    for tenant in tenants:
        for row in await store.redis.xinfo_consumers(Keys(tenant).events, ARCHIVE_GROUP):
            if consumer is None or text(row["name"]) == consumer:
                total += int(row["pending"])
    return total


async def caught_up(store, tenants: list[str]) -> bool:
    for tenant in tenants:
        groups = {text(g["name"]): g for g in await store.redis.xinfo_groups(Keys(tenant).events)}
        group = groups.get(ARCHIVE_GROUP)
        if group is None or int(group["pending"]) or int(group["lag"] or 0):
            return False
    return True


async def test_archive_worker_killed_mid_batch_loses_and_doubles_nothing(
    real_store, archive_url, write_config, workers, eventually, monkeypatch
):
    store = real_store
    config = write_config(DEPLOYMENT)
    w = await world(DEPLOYMENT, store=store)
    tenants = [t.id for t in w.deployment.tenants]
    for tenant in w.deployment.tenants:
        await agents.set_presence(store, tenant, tenant.agents[0].id, "available")
    monkeypatch.setenv("DATABASE_URL", archive_url)
    names = ["archive-1", "archive-2"]
    for name in names:
        workers.start("archive", name, config, batch=20, claim_idle_ms=1000)
    await eventually(lambda: workers.reading(store, set(names)), "both archive workers reading")

    async def converse(n: int) -> None:
        tenant = w.deployment.tenants[n % 2]
        agent = tenant.agents[0].id
        conversation = await w.deliver(contact(tenant.id, address=f"+1555{n:07d}", body=f"contact {n}"))
        [offer] = [o for o in await agents.offers(store, tenant, agent) if o["conv"] == conversation]
        await agents.accept(store, tenant, agent, offer["reservation"])
        await agents.reply(store, tenant, agent, conversation, f"answer {n}")
        await agents.close(store, tenant, agent, conversation, "resolved")

    n = 0
    killed = False
    while n < CONVERSATIONS:
        for _ in range(10):
            await converse(n)
            n += 1
        if not killed:
            # Catch archive-1 holding entries it read and has not acknowledged: mid-batch.
            workers.freeze("archive-1")
            if await archive_pending(store, tenants, "archive-1"):
                workers.kill("archive-1")
                killed = True
            else:
                workers.thaw("archive-1")
    assert killed, "archive-1 was never caught mid-batch"

    await eventually(lambda: caught_up(store, tenants), "the archive group caught up with every events stream")
    assert workers.errors() == {}

    with psycopg.connect(archive_url) as conn:
        for tenant in tenants:
            stream = [text(i) for i, _ in await store.redis.xrange(Keys(tenant).events)]
            archived = [r[0] for r in conn.execute("SELECT entry FROM events WHERE tenant = %s", (tenant,))]
            assert sorted(archived) == sorted(stream)  # every entry, once
            ids = [text(c) for c in await store.redis.keys(f"{Keys(tenant).base}:conv:*") if text(c).count(":") == 3]
            for key in ids:
                conversation = key.rsplit(":", 1)[1]
                redis_history = await conversations.history(store, tenant, conversation)
                rows = conn.execute(
                    "SELECT id, body FROM messages WHERE tenant = %s AND conversation = %s ORDER BY position",
                    (tenant, conversation),
                ).fetchall()
                assert rows == [(e.id, e.body) for e in redis_history]
                state = conn.execute(
                    "SELECT state FROM conversations WHERE tenant = %s AND id = %s", (tenant, conversation)
                ).fetchone()
                assert state == ("closed",)
        total = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        assert total == CONVERSATIONS


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start again."""
    try:
        server = PostgresServer()
    except PostgresMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: archive tests must run in CI", pytrace=False)
        pytest.skip(f"needs PostgreSQL's server binaries: {exc}")
    with server:
        yield server


async def test_while_postgresql_is_down_events_wait_in_the_stream_and_none_is_lost(
    real_store, own_postgres, write_config, workers, eventually, monkeypatch
):
    store = real_store
    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE archive")
    url = own_postgres.url.rsplit("/", 1)[0] + "/archive"
    migrate.upgrade(url)
    config = write_config(DEPLOYMENT)
    w = await world(DEPLOYMENT, store=store)
    tenants = [t.id for t in w.deployment.tenants]
    monkeypatch.setenv("DATABASE_URL", url)
    workers.start("archive", "archive-1", config, batch=20)
    await eventually(lambda: workers.reading(store, {"archive-1"}), "the archive worker reading")
    for n in range(5):
        await w.deliver(contact("alpha", address=f"+1555{n:07d}", body=f"before {n}"))
    await eventually(lambda: caught_up(store, tenants), "the archive caught up before the outage")

    own_postgres.halt()
    for n in range(5, 10):
        await w.deliver(contact("alpha", address=f"+1555{n:07d}", body=f"during {n}"))
    # The worker read the new entries and holds them: nothing is acknowledged without a commit.
    await eventually(lambda: archive_pending(store, tenants), "the worker holding entries it cannot commit")
    assert not await caught_up(store, tenants)
    own_postgres.start()

    await eventually(lambda: caught_up(store, tenants), "the archive caught up after the outage")
    with psycopg.connect(url) as conn:
        stream = sorted(text(i) for i, _ in await store.redis.xrange(Keys("alpha").events))
        assert sorted(r[0] for r in conn.execute("SELECT entry FROM events WHERE tenant = 'alpha'")) == stream
        bodies = sorted(r[0] for r in conn.execute("SELECT body FROM messages"))
        assert bodies == sorted([f"before {n}" for n in range(5)] + [f"during {n}" for n in range(5, 10)])
    assert "archive database" in workers.log("archive-1")  # it said the database was away, once


async def test_a_fault_drill_killing_the_archive_and_restarting_postgresql_archives_everything_once():
    from ops.faults import DrillOptions, run_drill
    from ops.faults._report import render
    from ops.redis_server import RedisServerMissing

    options = DrillOptions(
        seconds=10.0, rate=20.0, settle_s=60.0, kill=("archive",), kill_every_s=2.0, restart_postgres=1, seed=7
    )
    try:
        report = await run_drill(options)
    except (RedisServerMissing, PostgresMissing) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: fault drills must run in CI", pytrace=False)
        pytest.skip(f"the drill needs redis-server and PostgreSQL: {exc}")
    summary = render(report)
    assert report.faults.get("SIGKILL archive", 0) > 0 and report.faults.get("postgres stop+start") == 1, summary
    assert report.quiet and report.tally.ok, summary
    assert report.archive is not None and report.archive["events"] > 0, summary
    assert (report.archive["events_missing"], report.archive["events_unknown"]) == (0, 0), summary
    assert report.archive["conversations"] > 0 and report.archive["histories_differing"] == 0, summary
    assert report.ok, summary
