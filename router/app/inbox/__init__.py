"""The agents' unified inbox: accounts, sessions, pages, the live socket and the
supervisors' floor, mounted on the web process by `setup(app)`."""

from __future__ import annotations

from aiohttp import web

# What an inbox page may load: only our own scripts, styles, images and socket. Inline
# style attributes carry a tenant's brand colour; no inline script is ever allowed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/inbox" or request.path.startswith("/inbox/"):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")


def setup(app: web.Application) -> None:
    """Mount the inbox under /inbox on the web process's application."""
    from router.app.inbox import (
        actions,
        campaigns,
        chat,
        live,
        login,
        media,
        pages,
        reports,
        search,
        sessions,
        supervisor,
    )

    app.middlewares.append(sessions.middleware)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(live.hub_context)
    app.on_shutdown.append(live.close_sockets)
    login.routes(app)
    pages.routes(app)
    media.routes(app)
    actions.routes(app)
    chat.routes(app)
    supervisor.routes(app)
    search.routes(app)
    reports.routes(app)
    campaigns.routes(app)
    app.router.add_get("/inbox/live", live.live)
