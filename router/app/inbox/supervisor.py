"""The supervisors' floor: per queue what waits, for how long, and today's service
level and CSAT; per agent their state and load; low ratings to follow up. Refreshed
live by the page's script."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from router import agents as agents_api
from router import events, floor, names
from router.app.inbox import satisfaction
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.pages import conversation, tenant_agent_names
from router.app.inbox.rendering import brand, render
from router.app.inbox.sessions import USER, require_role
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

SCAN_BATCH = 1000


@dataclass
class _Day:
    day: str
    start: str  # the first stream id of the day
    last: str = ""  # the last id read
    counts: dict[str, list[int]] = field(default_factory=dict)  # queue -> [within target, handled]
    counted: set[str] = field(default_factory=set)  # conversations already counted today


class ServiceLevels:
    """Today's service level per queue, kept up to date by reading only the events added
    since the last look (a refresh every few seconds must not rescan the day).

    A conversation counts once, when first answered: taken by an agent for "answer"
    queues, the first reply for "first_response" queues (email, SMS); a caller who hangs
    up counts as handled and not within target. Transfers do not count again."""

    def __init__(self) -> None:
        self._days: dict[str, _Day] = {}

    async def today(self, store: Store, tenant: Tenant) -> dict[str, tuple[int, int]]:
        """queue -> (answered within its target, handled) since the tenant's local midnight."""
        local = dt.datetime.now(ZoneInfo(tenant.timezone))
        day = local.date().isoformat()
        state = self._days.get(tenant.id)
        if state is None or state.day != day:
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            state = self._days[tenant.id] = _Day(day, f"{int(midnight.timestamp() * 1000)}-0")
        queues = {q.id: q.sla for q in tenant.queues}
        keys = Keys(tenant.id)
        while True:
            rows = await store.redis.xrange(
                keys.events, min=f"({state.last}" if state.last else state.start, count=SCAN_BATCH
            )
            for entry_id, fields in rows:
                state.last = text(entry_id)
                try:
                    event = events.decode_state(fields[b"e"])
                except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
                    continue
                if event.conversation in state.counted:
                    continue
                if isinstance(event, events.Accepted) and event.queue in queues:
                    if queues[event.queue].measure == "answer":
                        self._count(state, event.conversation, event.queue, event.waited_ms, queues)
                elif isinstance(event, events.MessageAdded) and event.direction == "out" and event.conversation:
                    queue, enqueued = await store.redis.hmget(
                        keys.conversation(event.conversation), "queue", "enqueued_at"
                    )
                    queue = text(queue or b"")
                    if queue in queues and queues[queue].measure == "first_response" and enqueued:
                        self._count(state, event.conversation, queue, event.occurred_at - int(enqueued), queues)
                elif isinstance(event, events.Abandoned) and event.queue in queues:
                    self._count(state, event.conversation, event.queue, None, queues)
            if len(rows) < SCAN_BATCH:
                break
        return {queue: (c[0], c[1]) for queue, c in state.counts.items()}

    @staticmethod
    def _count(state: _Day, conversation: str, queue: str, waited_ms: int | None, queues: dict) -> None:
        count = state.counts.setdefault(queue, [0, 0])
        count[0] += waited_ms is not None and waited_ms <= queues[queue].seconds * 1000
        count[1] += 1
        if conversation:
            state.counted.add(conversation)


LEVELS = web.AppKey("inbox_service_levels", ServiceLevels)


async def _floor(request: web.Request) -> list[dict[str, object]]:
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    levels = request.app[LEVELS]
    result = []
    for tenant_id in user.tenants(deployment):
        tenant = deployment.tenant(tenant_id)
        answered = await levels.today(store, tenant)
        queues = []
        for state in await floor.queues(store, tenant):
            queue = tenant.queue(state.queue)
            within, total = answered.get(state.queue, (0, 0))
            queues.append(
                {
                    "queue": state.queue,
                    "name": queue.name or queue.id,
                    "waiting": state.waiting,
                    "oldest_wait_s": state.oldest_wait_s,
                    "by_channel": state.by_channel,
                    "service_level": round(100 * within / total, 1) if total else None,
                    "target": f"{queue.sla.percent:g}% in {queue.sla.seconds} s",
                    "handled": total,
                }
            )
        agent_names = tenant_agent_names(tenant)
        work = [(a.id, record) for a in tenant.agents for record in await agents_api.work(store, tenant, a.id)]
        known = await names.records(store, tenant.id, (record.get("customer", "") for _, record in work))
        in_progress = []
        for agent_id, record in work:
            channel, address = names.where(record)
            in_progress.append(
                {
                    "conversation": record["id"],
                    "agent": agent_names[agent_id],
                    "state": "wrap-up" if record.get("state") == "closed" else record.get("state", ""),
                    "channel": channel,
                    "customer": names.display(known.get(record.get("customer", ""), {}), channel, address),
                    "queue": record.get("queue", ""),
                }
            )
        agents = [
            {
                "agent": a.agent,
                "name": agent_names.get(a.agent, a.agent),
                "presence": a.presence,
                "reason": a.reason,
                "load": a.load.get("total", 0),
                "capacity": a.capacity.get("total", 0),
                "by_channel": {k: v for k, v in a.load.items() if k != "total"},
            }
            for a in await floor.agents(store, tenant)
        ]
        by_state: dict[str, int] = {}
        for a in agents:
            by_state[str(a["presence"])] = by_state.get(str(a["presence"]), 0) + 1
        result.append(
            {
                "tenant": tenant.id,
                "name": tenant.name or tenant.id,
                "brand": brand(tenant),
                "queues": queues,
                "agents": agents,
                "by_state": by_state,
                "in_progress": in_progress,
                "satisfaction": await satisfaction.floor_today(store, tenant),
            }
        )
    return result


@require_role("supervisor", "admin")
async def floor_page(request: web.Request) -> web.Response:
    return render(request, "floor.html", tenants=await _floor(request))


@require_role("supervisor", "admin")
async def floor_json(request: web.Request) -> web.Response:
    return web.json_response({"now": events.now_ms(), "tenants": await _floor(request)})


@require_role("supervisor", "admin")
async def reassign(request: web.Request) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    form = await request.post()
    user = request[USER]
    target = str(form.get("target", ""))
    kind, _, name = target.partition(":")
    if target == "me":  # take over: offered to the supervisor's own agent in this tenant
        kind, name = "agent", user.agent_in(tenant.id)
    if kind not in ("agent", "queue") or not name:
        return await conversation(
            request, error="choose an agent or a queue (take over needs an agent of yours here)", status=409
        )
    if kind == "agent" and name not in {a.id for a in tenant.agents}:
        raise web.HTTPNotFound()
    if record.get("state") != "assigned":
        return await conversation(request, error="only a conversation an agent holds can be reassigned", status=409)
    outcome = await agents_api.reassign(
        request.app[STORE],
        tenant,
        record["id"],
        by=user.login,
        to_agent=name if kind == "agent" else "",
        to_queue=name if kind == "queue" else "",
        note=str(form.get("note", "")).strip()[:2000],
    )
    if outcome not in ("offered", "queued"):
        return await conversation(request, error=f"cannot reassign: {outcome.replace('_', ' ')}", status=409)
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done=reassigned")


def routes(app: web.Application) -> None:
    app[LEVELS] = ServiceLevels()
    app.router.add_get("/floor", floor_page)
    app.router.add_get("/floor.json", floor_json)
    app.router.add_post(CONVERSATION_PATH + "/reassign", reassign)
