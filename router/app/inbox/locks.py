"""The desk's locks page: logins locked out and client addresses throttled, each with a
button that lifts it (what `contactrouter user unlock` does, one lock at a time).

Admins see and lift every lock. A supervisor sees and lifts only the locks of logins that
share one of their tenants (never an admin's), and no throttled address or unknown name:
another tenant's staff stay invisible to them.
"""

from __future__ import annotations

import datetime as dt
import logging

from aiohttp import web

from router import audit
from router.app.inbox import accounts, lockout
from router.app.inbox.audit import tenants_of
from router.app.inbox.login import client_address
from router.app.inbox.rendering import read_form, render
from router.app.inbox.sessions import USER, require_role
from router.appkeys import DEPLOYMENT, STORE
from router.i18n import N_

log = logging.getLogger(__name__)

PATH = "/locks"
KINDS = {  # the audit trail keeps them in English; the page shows them in the reader's language
    "pair": N_("locked from one address"),
    "name": N_("locked from every address but those it uses"),
    "code": N_("second step locked"),
    "client": N_("address throttled"),
}


async def _visible(request: web.Request, lock: lockout.Lock) -> bool:
    viewer = request[USER]
    if viewer.role == "admin":
        return True
    if lock.kind == "client":
        return False
    user = await accounts.get(request.app[STORE], lock.name)
    if user is None or user.role == "admin":
        return False
    deployment = request.app[DEPLOYMENT]
    return bool(set(user.tenants(deployment)) & set(viewer.tenants(deployment)))


@require_role("supervisor", "admin")
async def locks_page(request: web.Request) -> web.Response:
    rows = []
    for lock in await lockout.in_force(request.app[STORE]):
        if await _visible(request, lock):
            until = dt.datetime.fromtimestamp(lock.until, dt.UTC).strftime("%H:%M UTC")
            rows.append({"lock": lock, "what": KINDS[lock.kind], "until": until})
    return render(request, "locks.html", rows=rows)


@require_role("supervisor", "admin")
async def lift(request: web.Request) -> web.Response:
    form = await read_form(request)
    kind = form.get("kind", "")
    if kind not in KINDS:
        raise web.HTTPBadRequest(text="no such kind of lock")
    lock = lockout.Lock(kind=kind, name=form.get("name", "")[:300], client=form.get("client", "")[:100])  # type: ignore[arg-type]
    if not await _visible(request, lock) or not await lockout.lift(request.app[STORE], lock):
        raise web.HTTPSeeOther(f"/inbox{PATH}?done=lock_gone")  # ended meanwhile, or not theirs to see
    log.info("inbox: %s lifted a lock (%s %r %s)", request[USER].login, kind, lock.name[:64], lock.client)
    owner = await accounts.get(request.app[STORE], lock.name) if lock.name else None
    await audit.record(
        request.app[STORE],
        "unlocked",
        actor=request[USER].login,
        client=client_address(request),
        tenants=tenants_of(owner),
        target=lock.name or lock.client,
        detail=KINDS[kind],
    )
    raise web.HTTPSeeOther(f"/inbox{PATH}?done=unlocked")


def routes(app: web.Application) -> None:
    app.router.add_get(PATH, locks_page)
    app.router.add_post(f"{PATH}/lift", lift)
