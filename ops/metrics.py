"""Prometheus metrics: every process serves its own /metrics.

Every process serves it on METRICS_PORT when set, a port of its own (`serve`; see
ops/supervisord.py for why not the client's multiprocess mode); the web process also mounts
it on its PORT for a scrape with OPS_TOKEN (`mount`). A scrape reads what it reports from
Redis, so no code path has to count for it, and never waits long for it (`refresh`):
- gauges of the shared state right now: queue depth and oldest wait per queue,
  stream length, pending and lag per consumer group, dead letters;
- counters from the tenants' events streams (the audit trail every state change is
  appended to), read on from where the last scrape stopped: contacts in and out per
  channel, offers and reservations by outcome, abandons, SLA breaches, deliveries by
  status, and the wait until an agent accepted, as a histogram.
Since they describe shared state, every process reports the same values for these:
query them with max() over the instances, not sum(). What a process measures of its
own (the routing latency, process CPU and memory) is summed as usual.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ops import access, aggregates, health, reports
from router import bus, events, figures, floor
from router.config import Deployment
from router.keys import Keys, shard_of
from router.settings import Settings
from router.store import Store, text

log = logging.getLogger(__name__)

REFRESH_TIMEOUT_S = 2.0  # a scrape waits no longer for the store: it serves the last values read, with their age
EVENTS_PER_SCRAPE = 50_000  # per tenant; a backlog beyond it is counted by the next scrapes
WAIT_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)

# Measured in this process (the default registry also carries process CPU, memory, GC).
HTTP_REQUESTS = Counter(
    "contactrouter_http_requests",
    "Requests the web process answered, by route (its pattern: ids are not labels) and status code",
    ["route", "method", "code"],
)
SMTP_REPLIES = Counter("contactrouter_smtp_replies", "Replies the smtp process sent, by SMTP reply code", ["code"])
ROUTING_LATENCY = Histogram(
    "contactrouter_routing_latency_seconds",
    "From a contact's inbound stream entry to the end of its routing batch (queued, offered or dead-lettered)",
    ["tenant"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def observe_routed(entries: list[bus.Entry], routed: set[bus.Entry]) -> None:
    """Record the routing latency of the batch's entries routed now (the id is the XADD time).
    One passed over as stored before is left out: the worker that stored it counted it, except
    when it was this worker's own call whose answer was lost (a dropped connection; rare), which
    goes uncounted rather than a stalled worker's copy being counted twice."""
    now_ms = time.time() * 1000
    shards: dict[str, Any] = {}  # a batch reads few streams: each one's series looked up once
    for entry in entries:
        if entry in routed:
            if (series := shards.get(entry.stream)) is None:
                series = shards[entry.stream] = ROUTING_LATENCY.labels(shard_of(entry.stream))
            series.observe(max(0.0, now_ms - int(entry.id.partition("-")[0])) / 1000)


class _StateCollector:
    """Gauges read from Redis by `Metrics.refresh`, handed to the registry as they were read."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class Metrics:
    """One process's metrics over a store and deployment; `exposition` refreshes and renders."""

    def __init__(self, store: Store, deployment: Deployment, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.deployment = deployment
        # A registry of its own: several apps in one process (tests, `up`) never clash.
        self.registry = registry or CollectorRegistry()
        self._state = _StateCollector()
        self.registry.register(self._state)
        self._lock = asyncio.Lock()  # two scrapes at once must not count the same events twice
        self._after: dict[str, str] = {}  # tenant -> last events stream id counted
        self._today: dict[str, aggregates.Today] = {}  # tenant -> today's figures, read on incrementally
        self._read: list[Metric] = []  # the last gauges the store gave, served while it does not answer
        self._read_at: float | None = None  # when (monotonic)
        self._failing = False
        r = self.registry
        self.contacts_in = Counter(
            "contactrouter_contacts_in", "Customer messages and calls received", ["tenant", "channel"], registry=r
        )
        self.contacts_out = Counter(
            "contactrouter_contacts_out", "Agent replies sent to customers", ["tenant", "channel"], registry=r
        )
        self.queued = Counter(
            "contactrouter_contacts_queued", "New conversations queued (offered)", ["tenant", "queue"], registry=r
        )
        self.offers = Counter("contactrouter_offers", "Reservations offered to agents", ["tenant", "queue"], registry=r)
        self.reservations = Counter(
            "contactrouter_reservations",
            "Offers answered, by outcome (accepted, rejected, timed_out)",
            ["tenant", "queue", "outcome"],
            registry=r,
        )
        self.abandoned = Counter(
            "contactrouter_abandoned", "Callers who hung up while waiting", ["tenant", "queue"], registry=r
        )
        self.sla_breaches = Counter(
            "contactrouter_sla_breaches",
            "Contacts that waited past their queue's target",
            ["tenant", "queue"],
            registry=r,
        )
        self.deliveries = Counter(
            "contactrouter_deliveries",
            "Outbound delivery attempts by status (sent, delivered, failed, refused, unknown, retry)",
            ["tenant", "channel", "status"],
            registry=r,
        )
        self.answer_wait = Histogram(
            "contactrouter_answer_wait_seconds",
            "How long contacts waited until an agent accepted them",
            ["tenant", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    async def refresh(self) -> None:
        """Read the gauges and count the new events, or, when the store does not answer within
        REFRESH_TIMEOUT_S (the probe's 1 s first: a store that is down fails at once), keep the
        last values read, with store_up 0 and their age: a scrape during an outage took 9 s."""
        async with self._lock:
            up = GaugeMetricFamily("contactrouter_store_up", "1 when the store answered this scrape")
            try:
                await self.store.probe.ping()
                self._read = await asyncio.wait_for(self._read_all(), REFRESH_TIMEOUT_S)
            except Exception as exc:  # a timeout too; the scrape still reports this process
                if not self._failing:
                    reason = str(exc) or type(exc).__name__
                    log.warning("metrics: reading the store failed (%s); serving the last values read", reason)
                self._failing = True
                up.add_metric([], 0)
            else:
                if self._failing:
                    log.info("metrics: the store answers again")
                self._read_at, self._failing = time.monotonic(), False
                up.add_metric([], 1)
            age = GaugeMetricFamily(
                "contactrouter_store_read_age_seconds",
                "How old the values read from the store are (0 when this scrape read them; absent before any read)",
            )
            if self._read_at is not None:
                age.add_metric([], round(time.monotonic() - self._read_at, 3) if self._failing else 0)
            self._state.families = [up, age, *self._read]

    async def _read_all(self) -> list[Metric]:
        families = await self._gauges()
        families += await self._floor()
        for tenant in self.deployment.tenants:
            await self._count_events(tenant.id)
        return families

    async def _floor(self) -> list[Metric]:
        """Agents per presence, and today's service level and AHT per queue, as the floor and
        the day's report count them (router/figures.py)."""
        presence = GaugeMetricFamily(
            "contactrouter_agents", "Agents by presence (available, busy, away, offline)", labels=["tenant", "presence"]
        )
        level = GaugeMetricFamily(
            "contactrouter_service_level",
            "Today's service level per queue (0-1): answered in target / (handled + abandoned - pending)",
            labels=["tenant", "queue"],
        )
        aht = GaugeMetricFamily(
            "contactrouter_aht_seconds", "Today's average handle time per queue", labels=["tenant", "queue"]
        )
        handled = GaugeMetricFamily(
            "contactrouter_handled_today", "Contacts queued today that an agent took", labels=["tenant", "queue"]
        )
        now = events.now_ms()
        for tenant in self.deployment.tenants:
            counts = dict.fromkeys(("available", "busy", "away", "offline"), 0)
            for agent in await floor.agents(self.store, tenant):
                counts[agent.presence] = counts.get(agent.presence, 0) + 1
            for state, number in counts.items():
                presence.add_metric([tenant.id, state], number)
            day = dt.datetime.fromtimestamp(now / 1000, ZoneInfo(tenant.timezone)).date()
            today = self._today.get(tenant.id)
            if today is None or today.day != day:
                today = self._today[tenant.id] = aggregates.Today(tenant, day)
            sums = await today.queues(self.store, now, max_events=EVENTS_PER_SCRAPE)
            for queue in tenant.queues:
                rated = figures.rates(sums.get(queue.id, figures.QueueSums()))
                handled.add_metric([tenant.id, queue.id], sums[queue.id].handled if queue.id in sums else 0)
                if rated.service_level is not None:
                    level.add_metric([tenant.id, queue.id], rated.service_level)
                if rated.aht_s is not None:
                    aht.add_metric([tenant.id, queue.id], rated.aht_s)
        return [presence, level, aht, handled]

    async def exposition(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry) + generate_latest(REGISTRY)

    async def _gauges(self) -> list[Metric]:
        depth = GaugeMetricFamily(
            "contactrouter_queue_waiting", "Contacts waiting in a queue", labels=["tenant", "queue"]
        )
        oldest = GaugeMetricFamily(
            "contactrouter_queue_oldest_wait_seconds",
            "How long the longest-waiting contact of a queue has waited",
            labels=["tenant", "queue"],
        )
        for tenant in self.deployment.tenants:
            for state in await floor.queues(self.store, tenant):
                depth.add_metric([tenant.id, state.queue], state.waiting)
                oldest.add_metric([tenant.id, state.queue], state.oldest_wait_s)
        labels = ["tenant", "stream", "group"]
        length = GaugeMetricFamily("contactrouter_stream_length", "Entries in a stream", labels=["tenant", "stream"])
        pending = GaugeMetricFamily(
            "contactrouter_group_pending", "Entries delivered to a consumer and not yet acknowledged", labels=labels
        )
        lag = GaugeMetricFamily("contactrouter_group_lag", "Entries not yet delivered to any consumer", labels=labels)
        consumers = GaugeMetricFamily("contactrouter_group_consumers", "Consumers in a group", labels=labels)
        for state in await health.group_states(self.store, self.deployment):
            kind = state.stream.rpartition(":")[2]
            length.add_metric([state.tenant, kind], state.length)
            if state.exists:
                pending.add_metric([state.tenant, kind, state.group], state.pending)
                consumers.add_metric([state.tenant, kind, state.group], state.consumers)
                if state.lag is not None:
                    lag.add_metric([state.tenant, kind, state.group], state.lag)
        dead = GaugeMetricFamily(
            "contactrouter_dead_letters",
            "Entries in the dead-letter stream, waiting for an operator",
            labels=["tenant"],
        )
        for tenant in self.deployment.tenants:
            keys = Keys(tenant.id)
            dead.add_metric([tenant.id], int(await self.store.redis.xlen(keys.dead)))
            length.add_metric([tenant.id, "events"], int(await self.store.redis.xlen(keys.events)))
        return [depth, oldest, length, pending, lag, consumers, dead]

    async def _count_events(self, tenant: str) -> None:
        stream = Keys(tenant).events
        after = self._after.get(tenant)
        if after is None:
            # Counters start with the process: what happened before is in the reports.
            last = await self.store.redis.xrevrange(stream, count=1)
            self._after[tenant] = text(last[0][0]) if last else "0-0"
            return
        counted = 0
        while counted < EVENTS_PER_SCRAPE:
            rows = await self.store.redis.xrange(stream, min=f"({after}", count=reports.PAGE)
            for entry_id, fields in rows:
                event = reports.decode_event(entry_id, fields)
                if event is not None:
                    self._count(event)
            if rows:
                after = text(rows[-1][0])
                self._after[tenant] = after
            counted += len(rows)
            if len(rows) < reports.PAGE:
                return

    def _count(self, event: events.StateEvent) -> None:
        t = event.tenant
        if isinstance(event, events.MessageAdded):
            (self.contacts_in if event.direction == "in" else self.contacts_out).labels(t, event.channel).inc()
        elif isinstance(event, events.Queued):
            self.queued.labels(t, event.queue).inc()
        elif isinstance(event, events.Reserved):
            self.offers.labels(t, event.queue).inc()
        elif isinstance(event, events.Accepted):
            self.reservations.labels(t, event.queue, "accepted").inc()
            self.answer_wait.labels(t, event.queue).observe(event.waited_ms / 1000)
        elif isinstance(event, events.Rejected | events.TimedOut):
            outcome = "rejected" if isinstance(event, events.Rejected) else "timed_out"
            self.reservations.labels(t, event.queue, outcome).inc()
        elif isinstance(event, events.Abandoned):
            self.abandoned.labels(t, event.queue).inc()
        elif isinstance(event, events.SlaBreached):
            self.sla_breaches.labels(t, event.queue).inc()
        elif isinstance(event, events.DeliveryStatus):
            self.deliveries.labels(t, event.channel, event.status).inc()


METRICS = web.AppKey("metrics", Metrics)
METRICS_TOKEN = web.AppKey("metrics_token", object)  # str | None: see mount


async def _handle(request: web.Request) -> web.Response:
    token = request.app[METRICS_TOKEN]
    if token == "":
        raise web.HTTPNotFound(text="metrics are not served on this port without OPS_TOKEN (or use METRICS_PORT)")
    if token is not None and not access.bearer(request, token):
        raise web.HTTPUnauthorized(text="send OPS_TOKEN as a bearer token", headers={"WWW-Authenticate": "Bearer"})
    body = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def mount(app: web.Application, store: Store, deployment: Deployment, token: str | None = None) -> None:
    """Serve GET /metrics on an aiohttp app. `token`: None serves anyone who reaches the
    listener (a private one, METRICS_PORT); a token must come as the bearer token; ""
    serves nobody (the public web port of a deployment without OPS_TOKEN)."""
    app[METRICS] = Metrics(store, deployment)
    app[METRICS_TOKEN] = token
    app.router.add_get("/metrics", _handle)


async def serve(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    """Serve /metrics on METRICS_PORT until stop, for the roles without a web server.

    A port already taken (two workers of one type on one host given the same port) is
    logged and the worker carries on without metrics rather than stopping.
    """
    app = web.Application()
    mount(app, store, deployment, settings.ops_token or None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    except OSError as exc:
        log.error(
            "metrics: cannot listen on %s:%d (%s); this process serves no metrics",
            settings.host,
            settings.metrics_port,
            exc,
        )
        await runner.cleanup()
        await stop.wait()
        return
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
