"""Prometheus metrics: what a scrape of /metrics reports after contacts were routed,
offered, accepted, answered and delivered through the real code paths."""

import asyncio
import io
import json
import logging
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ops import metrics
from router import agents, bus, conversations
from router.app import processes
from router.keys import DISPATCH_GROUP, ROUTING_GROUP
from router.settings import Settings
from tests.factories import contact, read_inbound, world
from workers import routing
from workers.dispatch import Dispatcher

# One agent who takes one conversation at a time, so a second contact waits.
FLOOR = """
[[tenants]]
id = "acme"

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
capacity = { sms = 1, total = 1 }
"""


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


@pytest.fixture
async def floor():
    """A world with its consumer groups, and a client of an app serving its /metrics."""
    w = await world(FLOOR)
    await processes.prepare(w.store, w.deployment)
    app = web.Application()
    metrics.mount(app, w.store, w.deployment)
    async with TestClient(TestServer(app)) as client:

        async def scrape() -> dict:
            response = await client.get("/metrics")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return samples(await response.text())

        yield w, scrape


async def a_busy_minute(w) -> None:
    """Two SMS arrive for one agent: one is accepted and answered, the reply delivered;
    the other waits. One more contact sits on the inbound stream, unread; one poison
    entry went to the dead letters."""
    await w.available("amy")
    conversation = await w.arrive(address="+15551230001")
    await w.arrive(address="+15551230002")
    assert await w.accept_offer("amy") == conversation
    await agents.reply(w.store, w.tenant, "amy", conversation, "On it")
    outbound = bus.Consumer(w.store, DISPATCH_GROUP, "d1", [w.keys.outbound], Dispatcher(w.store).handle, block_ms=1)
    assert await outbound.read() == 1
    await w.store.redis.xadd(w.keys.inbound, {"e": b"not msgpack"})
    [poison] = await read_inbound(w.store, "acme")
    await bus.Consumer(w.store, ROUTING_GROUP, "r1", [w.keys.inbound], None).dead_letter(poison, "undecodable")
    await bus.ingest(w.store, contact(address="+15551230003"))


async def test_queue_depth_and_oldest_wait_per_queue(floor):
    w, scrape = floor
    await a_busy_minute(w)
    scraped = await scrape()
    assert value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") == 1
    assert 0 <= value(scraped, "contactrouter_queue_oldest_wait_seconds", tenant="acme", queue="support") < 60
    assert value(scraped, "contactrouter_store_up") == 1


async def test_stream_backlog_per_consumer_group_and_dead_letters(floor):
    w, scrape = floor
    await a_busy_minute(w)
    scraped = await scrape()
    routing_group = {"tenant": "acme", "stream": "inbound", "group": "routing"}
    assert value(scraped, "contactrouter_group_lag", **routing_group) == 1  # the unread contact
    assert value(scraped, "contactrouter_group_pending", **routing_group) == 0
    assert value(scraped, "contactrouter_group_pending", tenant="acme", stream="outbound", group="dispatch") == 0
    # the two routed contacts, the dead-lettered entry and the unread one (until trimmed)
    assert value(scraped, "contactrouter_stream_length", tenant="acme", stream="inbound") == 4
    assert value(scraped, "contactrouter_dead_letters", tenant="acme") == 1


async def test_counters_count_what_happened_since_the_first_scrape(floor):
    w, scrape = floor
    early = await w.arrive(address="+15551230009")  # before the process counted anything: not counted
    await conversations.close_unanswered(w.store, "acme", early, "abandoned")
    await scrape()
    await a_busy_minute(w)
    scraped = await scrape()
    assert value(scraped, "contactrouter_contacts_in_total", tenant="acme", channel="sms") == 2
    assert value(scraped, "contactrouter_contacts_queued_total", tenant="acme", queue="support") == 2
    assert value(scraped, "contactrouter_offers_total", tenant="acme", queue="support") == 1  # the other one waits
    accepted = value(scraped, "contactrouter_reservations_total", tenant="acme", queue="support", outcome="accepted")
    assert accepted == 1
    assert value(scraped, "contactrouter_contacts_out_total", tenant="acme", channel="sms") == 1
    assert value(scraped, "contactrouter_deliveries_total", tenant="acme", channel="sms", status="sent") == 1
    assert value(scraped, "contactrouter_answer_wait_seconds_count", tenant="acme", queue="support") == 1
    again = await scrape()  # nothing new: nothing counted twice
    assert value(again, "contactrouter_contacts_in_total", tenant="acme", channel="sms") == 2


async def test_rejected_offers_are_counted_by_outcome(floor):
    w, scrape = floor
    await scrape()
    await w.available("amy")
    await w.arrive()
    [offer] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    scraped = await scrape()
    assert value(scraped, "contactrouter_reservations_total", tenant="acme", queue="support", outcome="rejected") == 1


async def test_a_routing_worker_measures_its_latency(floor):
    w, _scrape = floor
    before = REGISTRY.get_sample_value("contactrouter_routing_latency_seconds_count", {"tenant": "acme"}) or 0
    await bus.ingest(w.store, contact())
    worker = routing.consumer(w.store, w.deployment, Settings(consumer="r1", block_ms=1))
    assert await worker.read() == 1
    after = REGISTRY.get_sample_value("contactrouter_routing_latency_seconds_count", {"tenant": "acme"})
    assert after == before + 1
    # A copy of the entry handled again (a worker that stalled with it) is passed over, not counted again.
    [(entry_id, fields)] = await w.store.redis.xrange(w.keys.inbound)
    copy = bus.Entry(w.keys.inbound, entry_id.decode(), fields[b"e"], deliveries=2)
    assert await worker.handler([copy]) == set()
    assert REGISTRY.get_sample_value("contactrouter_routing_latency_seconds_count", {"tenant": "acme"}) == after


async def test_a_store_that_does_not_answer_still_gets_a_scrape_with_store_up_0(floor, monkeypatch):
    _w, scrape = floor

    async def unreachable(*_args):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(metrics.floor, "queues", unreachable)
    scraped = await scrape()
    assert value(scraped, "contactrouter_store_up") == 0
    assert value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") is None


async def test_the_web_process_serves_metrics_beside_readyz():
    from router.app.web import application

    w = await world()
    await processes.prepare(w.store, w.deployment)
    settings = Settings(ops_token="an operator's token")
    async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
        response = await client.get("/metrics", headers={"Authorization": "Bearer an operator's token"})
        scraped = samples(await response.text())
        refused = await client.get("/metrics")
        guessed = await client.get("/metrics", headers={"Authorization": "Bearer a guess"})
    assert value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") == 0
    assert refused.status == guessed.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"


async def test_the_web_port_serves_no_metrics_without_an_ops_token():
    """They name every tenant, queue and volume: not for whoever reaches the webhooks."""
    from router.app.web import application

    w = await world()
    async with TestClient(TestServer(application(w.store, w.deployment, Settings()))) as client:
        response = await client.get("/metrics")
        assert response.status == 404 and "OPS_TOKEN" in await response.text()
        response = await client.get("/metrics", headers={"Authorization": "Bearer "})
        assert response.status == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def get_metrics(port: int) -> dict:
    """Scrape a listener that may still be starting."""
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    return samples(await response.text())
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


async def test_a_routing_process_serves_metrics_on_metrics_port():
    w = await world(FLOOR)
    settings = Settings(metrics_port=free_port(), block_ms=10)
    stop = asyncio.Event()
    process = asyncio.create_task(processes.run_roles(["routing"], w.store, w.deployment, settings, stop))
    try:
        await bus.ingest(w.store, contact())
        for _ in range(200):  # until the routing role took it
            scraped = await get_metrics(settings.metrics_port)
            if value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") == 1:
                break
            await asyncio.sleep(0.02)
        assert value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") == 1
        assert value(scraped, "contactrouter_routing_latency_seconds_count", tenant="acme") >= 1
    finally:
        stop.set()
        await process


async def test_a_metrics_port_already_taken_leaves_the_worker_running(caplog):
    w = await world()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stop = asyncio.Event()
        server = asyncio.create_task(
            metrics.serve(w.store, w.deployment, Settings(metrics_port=taken.getsockname()[1]), stop)
        )
        await asyncio.sleep(0.05)
        assert not server.done()  # still waiting for stop, not failed
        stop.set()
        await server
    assert "serves no metrics" in caplog.text


def test_json_logs_carry_the_tenant_conversation_and_contact_ids_a_log_call_passes():
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(processes.JsonLogs())
    log = logging.getLogger("tests.ops.json_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        ids = {"tenant": "acme", "conversation": "01J0CONV", "contact": "01J0CONTACT"}
        log.warning("contact %s queued", "01J0CONTACT", extra=ids)
        log.warning("nothing to say about a contact")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in lines.getvalue().splitlines())
    assert first["msg"] == "contact 01J0CONTACT queued"
    assert {key: first[key] for key in ids} == ids
    assert not set(ids) & set(second)


async def test_a_scrape_while_the_store_hangs_serves_the_last_values_read_with_their_age(floor, monkeypatch):
    w, scrape = floor
    await w.arrive(address="+15551230001")
    assert value(await scrape(), "contactrouter_queue_waiting", tenant="acme", queue="support") == 1

    async def hangs(*_args, **_kwargs):
        await asyncio.sleep(60)  # a failover the client's retries wait out

    monkeypatch.setattr(metrics.floor, "queues", hangs)
    # bounded well below the 60 s the store would take: the scrape gives up on it after 2 s
    scraped = await asyncio.wait_for(scrape(), timeout=15)
    assert value(scraped, "contactrouter_store_up") == 0
    assert value(scraped, "contactrouter_queue_waiting", tenant="acme", queue="support") == 1  # the last read
    assert value(scraped, "contactrouter_store_read_age_seconds") >= metrics.REFRESH_TIMEOUT_S


async def test_a_store_that_is_down_is_not_waited_for(floor, monkeypatch):
    w, scrape = floor
    await scrape()

    async def refused(*_args, **_kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(w.store.probe, "ping", refused)
    monkeypatch.setattr(metrics.floor, "queues", lambda *_a: asyncio.sleep(60))
    scraped = await asyncio.wait_for(scrape(), timeout=1)  # the probe said so: nothing else is asked
    assert value(scraped, "contactrouter_store_up") == 0


async def test_agents_per_presence_and_todays_service_level_and_aht_per_queue(floor):
    w, scrape = floor
    await a_busy_minute(w)
    conversation = (await w.store.redis.smembers(w.keys.agent_work("amy"))).pop().decode()
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    scraped = await scrape()
    assert value(scraped, "contactrouter_agents", tenant="acme", presence="available") == 1
    assert value(scraped, "contactrouter_agents", tenant="acme", presence="offline") == 0
    assert value(scraped, "contactrouter_handled_today", tenant="acme", queue="support") == 1
    assert value(scraped, "contactrouter_service_level", tenant="acme", queue="support") == 1.0
    assert value(scraped, "contactrouter_aht_seconds", tenant="acme", queue="support") >= 0


async def test_a_web_process_serves_its_own_metrics_on_metrics_port_with_its_requests_by_route_and_code():
    w = await world(FLOOR)
    settings = Settings(metrics_port=free_port(), port=free_port(), host="127.0.0.1")
    route = "/inbox/t/{tenant}/c/{conversation}"  # the pattern: ids are no labels
    labels = {"route": route, "method": "GET", "code": "302"}  # to the login page
    before = REGISTRY.get_sample_value("contactrouter_http_requests_total", labels) or 0
    stop = asyncio.Event()
    process = asyncio.create_task(processes.run_roles(["web"], w.store, w.deployment, settings, stop))
    try:
        await get_metrics(settings.metrics_port)  # the web process's own port, beside its PORT
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{settings.port}/inbox/t/acme/c/no-such"
            async with session.get(url, allow_redirects=False) as response:
                assert response.status == 302
        scraped = await get_metrics(settings.metrics_port)
    finally:
        stop.set()
        await process
    assert value(scraped, "contactrouter_http_requests_total", **labels) == before + 1


async def test_smtp_replies_are_counted_by_code(tmp_path):
    import aiosmtplib

    from workers import smtp

    w = await world()
    settings = Settings(smtp_port=free_port(), attachment_dir=str(tmp_path))
    server = await smtp.start(w.store, w.deployment, settings)
    before = REGISTRY.get_sample_value("contactrouter_smtp_replies_total", {"code": "550"}) or 0
    try:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(
                "Subject: hi\r\n\r\nhello", sender="a@example.com", recipients=["nobody@nowhere.example"],
                hostname="127.0.0.1", port=settings.smtp_port,
            )  # fmt: skip
    finally:
        server.close()
    assert REGISTRY.get_sample_value("contactrouter_smtp_replies_total", {"code": "550"}) == before + 1
