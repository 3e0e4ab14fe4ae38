"""Campaign workers on a real redis-server: two share the work without duplicates, and a
killed one's claim is finished by another."""

import asyncio
import datetime as dt
import io
from collections import Counter

import pytest

from router import events, queues
from router.campaigns import registry
from router.campaigns.model import parse_campaign
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from tests.factories import deployment
from workers.campaigns import audience
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)
DEPLOYMENT = """
[[tenants]]
id = "acme"
[[tenants.queues]]
id = "support"
"""
CAMPAIGN = """
id = "offer"
tenant = "acme"
kind = "cross_sell"
channel = "sms"
queue = "support"
window = { start = "00:00", end = "24:00" }  # any hour: the role test runs on the real clock
pacing = { per_minute = 600000 }
[templates.sms.en]
body = "Hi {{ name }}: 20% off for you."
"""


async def prepared(store, rows: int):
    config = deployment(DEPLOYMENT)
    await queues.apply_tenant(store, config.tenants[0])
    campaign = parse_campaign(CAMPAIGN)
    await registry.create(store, config, campaign)
    csv_text = "phone,name\n" + "".join(f"+1212555{i:04d},P{i}\n" for i in range(rows))
    report = await audience.import_csv(store, campaign, io.StringIO(csv_text))
    assert report.imported == rows
    await registry.change(store, "acme", "offer", "launch", deployment=config)
    return config


async def sent_ids(store) -> Counter:
    return Counter(events.decode_outbound(f[b"e"]).id for _id, f in await store.redis.xrange(KEYS.outbound))


@pytest.fixture
async def second_store(redis_url):
    store = connect(Settings(redis_url=redis_url, consumer="test-2"))
    try:
        yield store
    finally:
        await store.close()


async def test_two_workers_share_a_campaign_without_sending_anyone_twice(real_store, second_store):
    config = await prepared(real_store, 1500)
    workers = [CampaignWorker(store, config, batch=100, clock=lambda: NOON_NY) for store in (real_store, second_store)]
    handled = Counter()

    async def run(index: int) -> None:
        while True:
            done = await workers[index].step()
            if not done:
                return
            handled[index] += done

    await asyncio.gather(run(0), run(1))
    ids = await sent_ids(real_store)
    assert len(ids) == 1500 and set(ids.values()) == {1}
    assert handled[0] > 0 and handled[1] > 0  # both took a share
    assert (await registry.progress(real_store, "acme", "offer")).counts["sent"] == 1500


class Killed(Exception):
    pass


class KilledAfterClaim(CampaignWorker):
    async def _send(self, tenant, loaded, now_ms, pending, later, final, agent=""):
        raise Killed


async def test_a_killed_workers_claim_is_finished_by_another_once_its_lease_ends(real_store, second_store):
    config = await prepared(real_store, 300)
    dead = KilledAfterClaim(real_store, config, batch=100, lease_ms=300, clock=lambda: NOON_NY)
    with pytest.raises(Killed):
        await dead.run_batch("acme", "offer")
    alive = CampaignWorker(second_store, config, batch=100, clock=lambda: NOON_NY)
    while await alive.step():  # everyone but the dead worker's 100
        pass
    assert len(await sent_ids(real_store)) == 200
    await asyncio.sleep(0.4)
    while await alive.step():
        pass
    ids = await sent_ids(real_store)
    assert sorted(ids) == sorted(f"cmp-offer-{n}-1" for n in range(1, 301)) and set(ids.values()) == {1}


async def test_the_campaigns_role_sends_through_dispatch_to_the_sandbox_outbox(real_store, redis_url):
    from channels.sandbox import outbox
    from router.app import processes

    config = await prepared(real_store, 20)
    stop = asyncio.Event()
    settings = Settings(redis_url=redis_url, block_ms=50)
    roles = asyncio.create_task(processes.run_roles(["campaigns", "dispatch"], real_store, config, settings, stop))
    try:
        for _ in range(200):
            if len(await outbox(real_store, "acme", 100)) == 20:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await roles
    kept = await outbox(real_store, "acme", 100)
    assert sorted(m.id for _e, _p, m in kept) == sorted(f"cmp-offer-{n}-1" for n in range(1, 21))
    # the results follower reads the events stream in its own consumer group
    groups = {g["name"].decode() for g in await real_store.redis.xinfo_groups(KEYS.events)}
    assert "campaigns" in groups


async def test_on_redis_a_message_the_rules_now_refuse_is_held_or_refused_as_it_is_to_leave(real_store):
    config = await prepared(real_store, 3)
    worker = CampaignWorker(real_store, config)  # the real clock: the campaign's window is all day
    assert await worker.step() == 3
    await real_store.redis.sadd(KEYS.do_not_contact, "+12125550000")  # after the messages were queued
    await registry.change(real_store, "acme", "offer", "pause")
    dispatcher = Dispatcher(real_store, deployment=config)
    queued = [events.decode_outbound(f[b"e"]) for _id, f in await real_store.redis.xrange(KEYS.outbound)]
    assert [await dispatcher.deliver(m, events.encode(m)) for m in queued] == ["refused", "held", "held"]
    statuses = await real_store.redis.hmget(KEYS.campaign_status("offer"), ["1", "2", "3"])
    assert statuses == [b"suppressed:refused_at_send:1:sms:do_not_contact", b"held:1:sms:paused", b"held:1:sms:paused"]
    # the delivery events Redis's own MessagePack wrote read as the product's events
    states = [events.decode_state(f[b"e"]) for _id, f in await real_store.redis.xrange(KEYS.events)]
    reports = [state for state in states if isinstance(state, events.DeliveryStatus)]
    assert [(r.message, r.status, r.error) for r in reports] == [
        ("cmp-offer-1-1", "refused", "refused_at_send: do_not_contact"),
        ("cmp-offer-2-1", "held", "refused_at_send: paused"),
        ("cmp-offer-3-1", "held", "refused_at_send: paused"),
    ]
    await registry.change(real_store, "acme", "offer", "resume")
    assert await worker.step() == 2
    again = [events.decode_outbound(f[b"e"]) for _id, f in await real_store.redis.xrange(KEYS.outbound)][3:]
    assert [await dispatcher.deliver(m, events.encode(m)) for m in again] == ["sent", "sent"]
    progress = await registry.progress(real_store, "acme", "offer")
    assert (progress.counts["sent"], progress.counts["suppressed"], progress.queued) == (2, 1, 0)
    assert progress.refused_at_send == {"do_not_contact": 1, "paused": 2}
