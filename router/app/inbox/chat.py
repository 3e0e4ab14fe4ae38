"""Web chat extras in the inbox: the agent's typing and read marks go to the visitor's
open tabs (the web chat channel shows them); the visitor's come back over /inbox/live."""

from __future__ import annotations

import logging

from aiohttp import web

from channels.webchat import signals
from router import conversations
from router.app.inbox.access import CONVERSATION_PATH, agent_of, conversation_of
from router.appkeys import STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)


def is_chat(record: dict[str, str]) -> bool:
    return record.get("last_channel") == "webchat" and bool(record.get("last_address"))


async def mark_read(store: Store, tenant: Tenant, record: dict[str, str]) -> None:
    """The agent has seen the visitor's messages: their newest one is marked read in the
    widget, once (a page reload does not send the same mark again)."""
    if not is_chat(record):
        return
    entries = await conversations.history(store, tenant.id, record["id"])
    newest = next((e.id for e in reversed(entries) if e.kind == "in"), "")
    seen = await store.redis.hget(Keys(tenant.id).webchat_visitor(record["last_address"]), "agent_read")
    if newest and (seen is None or text(seen) != newest):
        await signals.agent_read(store, tenant, record["id"], newest)


async def typing(request: web.Request) -> web.Response:
    """The agent is typing (or stopped): shown in the visitor's tabs. Sent by the page's
    script with the CSRF header; only the agent holding a web chat may send it."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    agent = agent_of(request, tenant)
    if record.get("agent") != agent or record.get("state") != "assigned" or not is_chat(record):
        raise web.HTTPConflict(text="typing marks are for a web chat you hold")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='expected JSON: {"active": true|false}') from None
    active = body.get("active") if isinstance(body, dict) else None
    if not isinstance(active, bool):
        raise web.HTTPBadRequest(text='expected JSON: {"active": true|false}')
    await signals.agent_typing(request.app[STORE], tenant, record["id"], agent, active)
    return web.Response(status=204)


def routes(app: web.Application) -> None:
    app.router.add_post(CONVERSATION_PATH + "/typing", typing)
