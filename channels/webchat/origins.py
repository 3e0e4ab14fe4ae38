"""Which web pages may talk to a tenant's chat: its allow-list of origins.

Browsers always send Origin with a websocket handshake and a cross-site POST, and
a page cannot forge it, so a widget copied onto another site is refused here
before anything is read. The tenant's demo page, served by this process itself,
is allowed when the tenant enables it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.webchat._runtime import chat_tenant
from router.config import Tenant
from router.config.webchat import WebchatChannel

log = logging.getLogger(__name__)


def request_origin(request: web.Request) -> str:
    return request.headers.get("Origin", "").strip().rstrip("/").lower()


def is_allowed(request: web.Request, webchat: WebchatChannel) -> bool:
    origin = request_origin(request)
    if not origin:
        return False
    if origin in (o.rstrip("/").lower() for o in webchat.allowed_origins):
        return True
    # Host is set by the browser to this server, so Origin equal to it means a page of ours.
    return webchat.demo_page and origin == f"{request.scheme}://{request.host}".lower()


def cors_headers(request: web.Request, webchat: WebchatChannel) -> dict[str, str]:
    """CORS answer headers for an allowed page (none for any other: the browser then blocks it)."""
    if not is_allowed(request, webchat):
        return {}
    return {
        "Access-Control-Allow-Origin": request.headers["Origin"],
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def allowed_post(request: web.Request, what: str = "") -> tuple[Tenant, WebchatChannel, dict[str, str]]:
    """The chat's tenant and settings, and the CORS headers to answer with, for a request
    from an allowed page; any other is refused (403), logged as `what` when given."""
    tenant, webchat = chat_tenant(request)
    headers = cors_headers(request, webchat)
    if not headers:
        if what:
            log.warning("%s %s refused: origin %r", what, tenant.id, request_origin(request))
        raise web.HTTPForbidden(text="this site may not use this chat")
    return tenant, webchat, headers


async def preflight(request: web.Request) -> web.Response:
    """The answer to a browser's OPTIONS before a cross-site POST to the chat."""
    _tenant, _webchat, headers = allowed_post(request)
    return web.Response(status=204, headers=headers)
