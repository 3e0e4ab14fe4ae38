"""The agents' unified inbox: accounts, sessions, pages, the live socket and the
supervisors' floor, a sub-application of the web process mounted at /inbox by
`setup(app)`: its session middleware and security headers apply to its own pages only,
never to the providers' webhooks beside it."""

from __future__ import annotations

from aiohttp import web

from router.app.inbox import (
    actions,
    audit,
    call_panel,
    call_transfer,
    campaign_callbacks,
    campaign_session,
    campaigns,
    chat,
    enrolment,
    knowledge,
    language,
    live,
    locks,
    login,
    media,
    pages,
    recordings,
    reports,
    satisfaction,
    search,
    sessions,
    softphone,
    supervisor,
)
from router.appkeys import DEPLOYMENT, SETTINGS, STORE

# What an inbox page may load: only our own scripts, styles, images and socket. Inline
# style attributes carry a tenant's brand colour; no inline script is ever allowed. The
# softphone's SDK (served by us) also talks to Twilio's signalling and insights hosts.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' wss://*.twilio.com https://*.twilio.com; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


def application(store_of: web.Application) -> web.Application:
    """The inbox on its own: routes relative to its mount point, the store, deployment
    and settings of the web process (`store_of`) that mounts it."""
    inbox = web.Application(middlewares=[sessions.middleware, enrolment.gate])
    for key in (STORE, DEPLOYMENT, SETTINGS):
        inbox[key] = store_of[key]  # type: ignore[index]
    inbox.on_response_prepare.append(_security_headers)
    inbox.cleanup_ctx.append(live.hub_context)
    inbox.on_shutdown.append(live.close_sockets)
    login.routes(inbox)
    enrolment.routes(inbox)
    locks.routes(inbox)
    audit.routes(inbox)
    pages.routes(inbox)
    media.routes(inbox)
    actions.routes(inbox)
    chat.routes(inbox)
    supervisor.routes(inbox)
    search.routes(inbox)
    reports.routes(inbox)
    satisfaction.routes(inbox)
    campaigns.routes(inbox)
    campaign_callbacks.routes(inbox)
    campaign_session.routes(inbox)
    softphone.routes(inbox)
    recordings.routes(inbox)
    call_transfer.routes(inbox)
    call_panel.routes(inbox)
    knowledge.routes(inbox)
    language.routes(inbox)
    inbox.router.add_get("/live", live.live)
    return inbox


INBOX = web.AppKey("inbox", web.Application)  # the mounted sub-application, on the web process's


def setup(app: web.Application) -> None:
    """Mount the inbox under /inbox on the web process's application."""
    app[INBOX] = application(app)
    app.add_subapp(sessions.PREFIX, app[INBOX])
