"""The callbacks customers asked for on campaign conversations, in the agent's desk.

    POST /inbox/t/{tenant}/c/{conversation}/callback-at   schedule it (the customer's local time)
    GET  /inbox/campaign-callbacks                       the agent's callbacks, soonest first
    POST /inbox/campaign-callbacks/{tenant}/{conversation}/done   off the list

A callback is the agent's own (router.campaigns.callbacks): they call from the conversation,
so the customer gets the agent they spoke to. The list says, for each, whether it may be
made now or why not (the campaign paused, the number on do-not-contact or opted out, a
dispute, outside the campaign's hours).
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from aiohttp import web

from router import conversations, names
from router.app.inbox.access import CONVERSATION_PATH, ID, agent_of, conversation_of, tenant_of
from router.app.inbox.pages import conversation
from router.app.inbox.rendering import brand, read_form, render
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, STORE
from router.campaigns import callbacks
from router.campaigns.model import CampaignError

log = logging.getLogger(__name__)


async def schedule(request: web.Request) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    agent = agent_of(request, tenant)
    form = await read_form(request)
    try:
        made = await callbacks.schedule(
            request.app[STORE], tenant.id, tenant.timezone, record, agent, form.get("at", ""), dt.datetime.now(dt.UTC)
        )
    except CampaignError as exc:
        return await conversation(request, error=f"The callback was not scheduled: {exc}", status=409)
    log.info("conversation %s of %s: callback scheduled for %s", made.conversation, tenant.id, agent)
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done=callback_scheduled")


async def listing(request: web.Request) -> web.Response:
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    now = dt.datetime.now(dt.UTC)
    now_ms = int(now.timestamp() * 1000)
    rows = []
    for tenant, agent in user.seats(deployment):
        for callback in await callbacks.of_agent(store, tenant.id, agent, now_ms):
            try:
                record = await conversations.get(store, tenant.id, callback.conversation)
            except conversations.NotFound:
                continue
            local = dt.datetime.fromtimestamp(callback.due_ms / 1000, ZoneInfo(callback.zone))
            rows.append(
                {
                    "tenant": tenant,
                    "brand": brand(tenant),
                    "callback": callback,
                    "customer": await names.of_conversation(store, tenant.id, record),
                    "when": f"{local:%a %d %b %H:%M} ({callback.zone})",
                    "due": callback.due_ms <= now_ms,
                    "refusal": await callbacks.refusal(store, tenant.id, tenant.timezone, callback, now),
                }
            )
    rows.sort(key=lambda r: r["callback"].due_ms)
    return render(request, "campaign_callbacks.html", rows=rows)


async def done(request: web.Request) -> web.Response:
    tenant = tenant_of(request, request.match_info["tenant"])
    agent = agent_of(request, tenant)
    await callbacks.done(request.app[STORE], tenant.id, agent, request.match_info["conversation"])
    raise web.HTTPSeeOther("/inbox/campaign-callbacks?done=callback_done")


def routes(app: web.Application) -> None:
    app.router.add_post(CONVERSATION_PATH + "/callback-at", schedule)
    app.router.add_get("/campaign-callbacks", listing)
    app.router.add_post("/campaign-callbacks/{tenant}/{conversation:" + ID + "}/done", done)
