"""What the web chat endpoints share in one web process: the token secret, the
live fan-out and the attachment store, set up with the app and closed with it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from channels.webchat.identity import server_secret
from channels.webchat.live import LiveHub
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.attachments import AttachmentStore
from router.config import Tenant
from router.config.webchat import WebchatChannel
from router.errors import UnknownTenant
from router.keyring import KeyRing

MAX_SOCKETS_PER_ADDRESS = 50  # open chats from one address in one web process (an office shares one)


@dataclass
class Runtime:
    secret: KeyRing  # signs with the newest key, verifies with each (router.keyring)
    hub: LiveHub
    attachments: AttachmentStore
    sockets: Counter[str] = field(default_factory=Counter)  # open sockets per client address


RUNTIME = web.AppKey("webchat", Runtime)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    store, deployment, settings = app[STORE], app[DEPLOYMENT], app[SETTINGS]
    hub = LiveHub(store, [t.id for t in deployment.tenants if t.webchat is not None])
    await hub.start()
    app[RUNTIME] = Runtime(
        secret=await server_secret(store, settings),
        hub=hub,
        attachments=AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes),
    )
    try:
        yield
    finally:
        await hub.close()


async def close_sockets(app: web.Application) -> None:
    """On shutdown: open chats would otherwise hold the server for its whole shutdown timeout."""
    if RUNTIME in app:
        await app[RUNTIME].hub.close_tabs()


def chat_tenant(request: web.Request) -> tuple[Tenant, WebchatChannel]:
    """The tenant the path names, if it has a web chat; 404 otherwise (the same for
    an unknown tenant, so the answer tells nothing about who exists)."""
    try:
        tenant = request.app[DEPLOYMENT].tenant(request.match_info["tenant"])
    except UnknownTenant:
        raise web.HTTPNotFound(text="no such chat") from None
    if tenant.webchat is None:
        raise web.HTTPNotFound(text="no such chat")
    return tenant, tenant.webchat


def is_open(tenant: Tenant, when: dt.datetime | None = None) -> bool:
    """Within the chat's hours (its own, else its entry queue's); no hours: always open."""
    assert tenant.webchat is not None
    hours = tenant.webchat.hours or tenant.queue(tenant.entry_queue("webchat")).hours
    return hours is None or hours.is_open(when or dt.datetime.now(dt.UTC))


def client_ip(request: web.Request) -> str:
    """The visitor's address (behind TRUSTED_PROXY_HOPS proxies, from X-Forwarded-For)."""
    return request.app[SETTINGS].client_address(request.remote, request.headers.getall("X-Forwarded-For", []))
