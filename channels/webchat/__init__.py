"""Web chat: a widget a tenant embeds with one script tag (widget), talking to the
web process over a websocket (socket) with signed visitor identities (identity),
flood limits (limits) and an origin allow-list (origins); messages into routing
(inbound), uploads and signed links to download files again (files), an offline
form, and agents' replies delivered through Redis to every open tab (outbound,
transcript, live, signals)."""

from __future__ import annotations

from aiohttp import web

from channels.webchat import files, offline, socket, uploads, widget
from channels.webchat._runtime import close_sockets, lifecycle
from channels.webchat.outbound import WebchatSender
from router.config import Deployment
from router.settings import Settings
from router.store import Store

__all__ = ["WebchatSender", "sender", "setup"]


def sender(store: Store, deployment: Deployment, settings: Settings) -> WebchatSender:
    """Replies go to the visitor's open tabs through Redis; no provider, so no settings."""
    return WebchatSender(store, deployment)


def setup(app: web.Application) -> None:
    """Mount the widget, its socket, uploads and the offline form."""
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_sockets)
    widget.setup(app)
    socket.setup(app)
    uploads.setup(app)
    files.setup(app)
    offline.setup(app)
