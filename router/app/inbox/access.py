"""Who may see what: tenant isolation for every inbox request.

Anything of a tenant the user has no membership of is answered 404, never 403,
so a guessed URL does not even learn that the conversation exists. An agent sees
a conversation that is (or was last) theirs, or that waits in one of their queues;
supervisors and admins see every conversation of their tenants.
"""

from __future__ import annotations

from aiohttp import web

from router import conversations
from router.app.inbox.accounts import User
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store

# An id taken from a URL has its shape, or the route does not match and the answer is 404.
# A colon or a dot in it would name another key of the record ("<id>:log" answered 500,
# Redis's WRONGTYPE); a reservation is its conversation's id and a count.
ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
CONVERSATION_PATH = "/t/{tenant}/c/{conversation:" + ID + "}"
OFFER_PATH = "/t/{tenant}/offers/{reservation:" + ID + r"\.[0-9]{1,9}}"


def tenant_of(request: web.Request, tenant_id: str) -> Tenant:
    user = request[USER]
    if tenant_id not in user.tenants(request.app[DEPLOYMENT]):
        raise web.HTTPNotFound()
    return request.app[DEPLOYMENT].tenant(tenant_id)


def agent_of(request: web.Request, tenant: Tenant) -> str:
    """The agent the user acts as in the tenant; 404 for a watcher with no agent there."""
    agent = request[USER].agent_in(tenant.id)
    if not agent:
        raise web.HTTPNotFound()
    return agent


async def may_see(store: Store, user: User, tenant: Tenant, record: dict[str, str]) -> bool:
    if user.supervises:
        return True
    agent = user.agent_in(tenant.id)
    if not agent:
        return False
    if record.get("agent") == agent:
        return True
    keys = Keys(tenant.id)
    if await store.redis.sismember(keys.agent_work(agent), record["id"]):
        return True
    return bool(record.get("queue")) and bool(await store.redis.sismember(keys.agent_queues(agent), record["queue"]))


async def conversation_of(request: web.Request, tenant_id: str, conversation: str) -> tuple[Tenant, dict[str, str]]:
    """The tenant and the conversation's record, or 404 if this user may not see it."""
    tenant = tenant_of(request, tenant_id)
    store = request.app[STORE]
    try:
        record = await conversations.get(store, tenant.id, conversation)
    except conversations.NotFound:
        raise web.HTTPNotFound() from None
    if not await may_see(store, request[USER], tenant, record):
        raise web.HTTPNotFound()
    return tenant, record
