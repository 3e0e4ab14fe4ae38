"""The whole pipeline survives faults under steady load: no accepted contact lost or
doubled, no reply sent twice, every reply delivered or marked failed.

Each test is one short drill (ops.faults): a redis-server with AOF, workers started
as the Procfile does (routing x2, dispatch, timers), customers adding contacts
through ingest, agents accepting, replying and closing, and one kind of fault.
The seed fixes the faults' moments and victims, so a failure can be replayed with
`python -m ops.faults run ... --seed N`.
"""

from __future__ import annotations

import os

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.sandbox import SandboxSender
from ops.faults import DrillOptions, DrillReport, run_drill
from ops.faults._audit import audit
from ops.faults._drill import deployment_toml
from ops.faults._report import render
from ops.redis_server import RedisServerMissing
from router import bus, events
from router.config import load_deployment
from router.keys import ROUTING_GROUP, Keys
from router.store import Store

pytestmark = pytest.mark.timeout(150)

LOAD = {"seconds": 12.0, "rate": 20.0, "settle_s": 45.0}
# What an agent's action may fail with while Redis is away (the drill's agents try again);
# anything else is a bug in our code.
REDIS_OUTAGE = {"ConnectionError", "BusyLoadingError", "TimeoutError", "WatchError"}


async def drill(**options: object) -> DrillReport:
    try:
        return await run_drill(DrillOptions(**LOAD, **options))
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: fault tests must run in CI", pytrace=False)
        pytest.skip(f"fault drills need a real redis-server: {exc}")


def assert_survived(report: DrillReport) -> None:
    t = report.tally
    summary = render(report)
    assert report.quiet, summary
    assert t.offered == t.accepted, summary  # every ingest got through, waiting out the outages
    assert (t.lost, t.duplicated) == (0, 0), summary
    assert t.replies > 0 and t.replies_lost == 0, summary
    assert t.sent_twice == 0, summary
    assert t.undelivered == 0 and t.sent == t.replies, summary  # the sandbox never fails a send
    assert not report.unexpected_exits, summary


async def test_workers_killed_at_random_moments_lose_double_and_resend_nothing():
    report = await drill(kill=("routing", "dispatch", "timers"), kill_every_s=1.0, seed=11)
    # On a loaded machine fewer kills fit in the drill's seconds; one of each is the point.
    assert report.faults.get("SIGKILL routing", 0) >= 1, report.faults
    assert report.faults.get("SIGKILL dispatch", 0) >= 1, report.faults
    assert_survived(report)


async def test_redis_killed_and_restarted_with_aof_always_loses_nothing_acknowledged():
    report = await drill(fsync="always", restart_redis=2, redis_crash="kill", seed=12)
    assert report.faults == {"redis kill+start": 2}
    assert_survived(report)
    assert set(report.agent_errors) <= REDIS_OUTAGE, render(report)


async def test_dropped_client_connections_lose_double_and_resend_nothing():
    report = await drill(drop_connections=6, seed=13)
    assert report.faults.get("connections dropped") == 6, report.faults
    assert report.faults["connections cut"] >= 6 * 4, "each drop cut at least the four workers' connections"
    assert_survived(report)
    # A cut connection is retried on a fresh one: the workers never see it, and an
    # agent's action fails at most with a Redis error (never a crash in our code).
    assert not report.worker_errors, render(report)
    assert set(report.agent_errors) <= REDIS_OUTAGE, render(report)


async def test_a_cut_connection_is_reconnected_not_reported(real_store: Store, redis_server):
    """The store's client retries on a fresh connection when Redis cut the one it held
    (CLIENT KILL, a restart): workers and webhooks see nothing of it."""
    inbound = Keys("t0").inbound
    await bus.ensure_group(real_store, inbound, ROUTING_GROUP)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        for command in (
            lambda: real_store.redis.ping(),
            lambda: real_store.redis.xinfo_groups(inbound),
            lambda: real_store.redis.xreadgroup(ROUTING_GROUP, "c", {inbound: ">"}, count=10, block=10),
        ):
            assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
            await command()  # raised ConnectionError before router/store.py used the asyncio Retry
    finally:
        await admin.aclose()


async def test_the_audit_counts_lost_doubled_resent_and_undelivered(real_store: Store, write_config):
    """The drill's verdict is only as good as its audit: planted defects are each counted."""
    deployment = load_deployment(write_config(deployment_toml(["t0"], agents=1)))
    keys = Keys("t0")

    def entry(kind: str, item: str) -> bytes:
        return msgspec.msgpack.encode(events.HistoryEntry(id=item, kind=kind, channel="sms", occurred_at=1))

    def reply(item: str) -> dict:
        message = events.OutboundMessage(
            id=item, tenant="t0", channel="sms", to="+15550000001", occurred_at=1, conversation="c1", body="hi"
        )
        return {"e": events.encode(message), "provider_id": f"sandbox-{item}"}

    await real_store.redis.rpush(
        keys.conversation_log("c1"), entry("in", "kept"), entry("in", "twice"), entry("out", "m1")
    )
    await real_store.redis.rpush(keys.conversation_log("c2"), entry("in", "twice"), entry("out", "m2"))
    await real_store.redis.rpush(keys.conversation_log("c3"), entry("out", "m3"))
    await real_store.redis.xadd(keys.outbox, reply("m1"))
    await real_store.redis.xadd(keys.outbox, reply("m1"))  # sent twice
    await real_store.redis.xadd(keys.outbox, reply("m3"))
    await real_store.redis.hset(keys.delivery("m1"), "status", "sent")
    await real_store.redis.hset(keys.delivery("m2"), "status", "sending")  # undelivered: cut short, never settled
    await real_store.redis.hset(keys.delivery("m3"), "status", "sent")

    tally = await audit(real_store, deployment, 4, {"kept", "twice", "gone"}, {"m1", "m2", "m3", "m4"})

    assert (tally.offered, tally.accepted, tally.lost, tally.duplicated) == (4, 3, 1, 1)
    assert (tally.replies, tally.replies_lost, tally.sent, tally.sent_twice, tally.undelivered) == (3, 1, 2, 1, 1)
    assert not tally.ok


async def test_a_send_whose_answer_was_lost_is_in_the_outbox_once(real_store: Store, monkeypatch):
    """The worst moment to lose a connection: Redis ran the send's transaction, its answer
    never arrived. The client tries again; the message must not be sent a second time."""
    original = Connection.read_response
    lost: list[object] = []

    async def answer_lost_once(self: Connection, *args: object, **kwargs: object) -> object:
        answer = await original(self, *args, **kwargs)
        if not lost and isinstance(answer, list) and len(answer) == 2:  # the send script's {1, entry id}
            lost.append(answer)
            raise RedisConnectionError("Connection closed by server.")
        return answer

    monkeypatch.setattr(Connection, "read_response", answer_lost_once)
    message = events.OutboundMessage(
        id="m1", tenant="t0", channel="sms", to="+15550000001", occurred_at=1, conversation="c1", body="hi"
    )

    assert await SandboxSender(real_store, "sms").send(message) == "sandbox-m1"

    monkeypatch.undo()
    assert lost, "the transaction ran and its answer was dropped"
    assert await real_store.redis.xlen(Keys("t0").outbox) == 1
