"""The supervisors' floor: per queue what waits, for how long, and today's service
level and CSAT; per agent their state and load; low ratings to follow up. Refreshed
live by the page's script."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web

from channels.voice import monitor
from ops import aggregates
from router import agents as agents_api
from router import audit, events, figures, floor, names
from router.app.inbox import satisfaction
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.login import client_address
from router.app.inbox.pages import conversation, tenant_agent_names
from router.app.inbox.rendering import brand, render
from router.app.inbox.sessions import USER, require_role
from router.app.inbox.softphone import TWILIO as SOFTPHONE_TWILIO
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Tenant
from router.figures import QueueSums
from router.store import Store


class ServiceLevels:
    """Today's figures per queue, as the day's report counts them (ops.aggregates.Today, by
    router/figures.py's definitions): the floor said 20 handled where the report said 15,
    counting abandons as handled and what was answered today of yesterday's contacts."""

    def __init__(self) -> None:
        self._days: dict[str, aggregates.Today] = {}

    async def today(self, store: Store, tenant: Tenant) -> dict[str, QueueSums]:
        """queue -> its sums of the contacts queued since the tenant's local midnight."""
        day = dt.datetime.now(ZoneInfo(tenant.timezone)).date()
        state = self._days.get(tenant.id)
        if state is None or state.day != day:
            state = self._days[tenant.id] = aggregates.Today(tenant, day)
        return await state.queues(store, events.now_ms())


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
            sums = answered.get(state.queue, QueueSums())
            level = figures.rates(sums).service_level
            queues.append(
                {
                    "queue": state.queue,
                    "name": queue.name or queue.id,
                    "waiting": state.waiting,
                    "oldest_wait_s": state.oldest_wait_s,
                    "by_channel": state.by_channel,
                    "service_level": None if level is None else round(100 * level, 1),
                    "target": f"{queue.sla.percent:g}% in {queue.sla.seconds} s",
                    "handled": sums.handled,
                }
            )
        agent_names = tenant_agent_names(tenant)
        work = [(a.id, record) for a in tenant.agents for record in await agents_api.work(store, tenant, a.id)]
        known = await names.records(store, tenant.id, (record.get("customer", "") for _, record in work))
        in_progress = []
        for agent_id, record in work:
            channel, address = names.where(record)
            on_call = await monitor.live_call(store, tenant.id, record["id"])
            in_progress.append(
                {
                    "conversation": record["id"],
                    "agent": agent_names[agent_id],
                    "state": "wrap-up" if record.get("state") == "closed" else record.get("state", ""),
                    "channel": channel,
                    "customer": names.display(known.get(record.get("customer", ""), {}), channel, address),
                    "queue": record.get("queue", ""),
                    "live_call": on_call,
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


@require_role("supervisor", "admin")
async def monitor_call(request: web.Request) -> web.Response:
    """Listen to, whisper to (coach the agent) or barge into a live call, or leave it
    (form: mode=listen|whisper|barge|leave): the supervisor's seat in the tenant rings."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    form = await request.post()
    user, mode = request[USER], str(form.get("mode", ""))
    if mode not in (*monitor.MODES, "leave"):
        raise web.HTTPBadRequest(text="mode: listen, whisper, barge or leave")
    twilio = request.app[SOFTPHONE_TWILIO]
    try:
        if mode == "leave":
            await monitor.leave(request.app[STORE], twilio, tenant, record["id"], login=user.login)
        else:
            await monitor.join(
                request.app[STORE],
                twilio,
                request.app[SETTINGS].base_url,
                tenant,
                record["id"],
                login=user.login,
                seat=user.agent_in(tenant.id),
                mode=mode,  # type: ignore[arg-type]
            )
    except monitor.MonitorError as exc:
        return await conversation(request, error=str(exc), status=409)
    if mode != "leave":  # hearing a customer's call is access to their data, as a recording is
        await audit.record(
            request.app[STORE],
            "call_monitored",
            actor=user.login,
            client=client_address(request),
            tenants=(tenant.id,),
            target=f"conversation {record['id']}",
            detail=mode,
        )
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done=monitor-{mode}")


def routes(app: web.Application) -> None:
    app[LEVELS] = ServiceLevels()
    app.router.add_get("/floor", floor_page)
    app.router.add_get("/floor.json", floor_json)
    app.router.add_post(CONVERSATION_PATH + "/reassign", reassign)
    app.router.add_post(CONVERSATION_PATH + "/monitor", monitor_call)
