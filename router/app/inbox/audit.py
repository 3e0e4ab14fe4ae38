"""The audit trail on the desk, for admins (router/audit.py keeps it), and whom an action
of or on a login concerns."""

from __future__ import annotations

import re

from aiohttp import web

from router.app.inbox import accounts
from router.app.inbox.rendering import render
from router.app.inbox.sessions import require_role
from router.appkeys import DEPLOYMENT, STORE
from router.audit import ACTIONS, EVERY_TENANT, read, when
from router.config import Deployment

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


def tenants_of(user: accounts.User | None) -> tuple[str, ...]:
    """The tenants an action of or on this login concerns."""
    if user is None:
        return ()
    if user.role == "admin" and not user.memberships:
        return (EVERY_TENANT,)
    return tuple(sorted(user.memberships))


def _tenant_choices(deployment: Deployment) -> list[tuple[str, str]]:
    return [(t.id, t.name or t.id) for t in deployment.tenants]


@require_role("admin")
async def page(request: web.Request) -> web.Response:
    """The trail for admins: one tenant's (or everything), one action's, a page at a time."""
    deployment = request.app[DEPLOYMENT]
    tenant = request.query.get("tenant", "")
    tenant = tenant if tenant in {t.id for t in deployment.tenants} else ""
    action = request.query.get("action", "")
    action = action if action in ACTIONS else ""
    before = request.query.get("before", "+")
    if before != "+" and not _STREAM_ID.fullmatch(before):
        before = "+"
    entries, more = await read(request.app[STORE], tenant=tenant, action=action, before=before)
    rows = [{"id": i, "entry": e, "when": when(e), "what": ACTIONS[e.action]} for i, e in entries]
    return render(
        request,
        "audit.html",
        rows=rows,
        more=more,
        tenant=tenant,
        action=action,
        tenants=_tenant_choices(deployment),
        actions=sorted(ACTIONS.items()),
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/audit", page)
