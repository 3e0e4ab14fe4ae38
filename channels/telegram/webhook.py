"""The Telegram webhook: POST /telegram/{tenant} on the web process.

Telegram sends each update with the secret the bot's webhook was set with
(`contactrouter telegram set-webhook`) in X-Telegram-Bot-Api-Secret-Token; a
request without the tenant's secret is refused (403) before anything is read or
stored. The answer is 200 only once the update's effect is stored; a store
failure answers 500, so that Telegram delivers the update again.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from redis.exceptions import RedisError

from channels.telegram import inbound
from channels.telegram.bots import TelegramBots
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.attachments import AttachmentStore
from router.config import Tenant
from router.errors import UnknownTenant
from router.settings import Settings

log = logging.getLogger(__name__)

PATH = "/telegram/{tenant}"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024  # an update is a few kilobytes; files never travel in it

_STORE_ERRORS = (RedisError, OSError)  # OSError: the connection itself, or the attachment disk


class _Clients:
    """The web process's bots and attachment store, made on the first update."""

    def __init__(self) -> None:
        self.bots: TelegramBots | None = None
        self.files: AttachmentStore | None = None

    def open(self, settings: Settings) -> tuple[TelegramBots, AttachmentStore]:
        if self.bots is None or self.files is None:
            self.bots = TelegramBots(settings)
            self.files = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
        return self.bots, self.files

    async def close(self, _app: web.Application) -> None:
        if self.bots is not None:
            await self.bots.close()


CLIENTS = web.AppKey("telegram_clients", _Clients)


def setup(app: web.Application) -> None:
    """Mount the webhook."""
    app[CLIENTS] = _Clients()
    app.on_cleanup.append(app[CLIENTS].close)
    app.router.add_post(PATH, update)


def _webhook_tenant(request: web.Request) -> Tenant:
    """The tenant the URL names, once the request carries its secret."""
    try:
        tenant = request.app[DEPLOYMENT].tenant(request.match_info["tenant"])
    except UnknownTenant:
        raise web.HTTPNotFound(text="no such tenant") from None
    telegram = tenant.telegram
    if telegram is None or telegram.mode != "webhook" or not telegram.webhook_ring():
        raise web.HTTPNotFound(text="this tenant takes no Telegram webhooks")
    given = request.headers.get(SECRET_HEADER, "").encode()
    # during a rotation both secrets pass: updates Telegram sent before set_webhook took the new one
    if not telegram.webhook_ring().any(lambda secret: hmac.compare_digest(given, secret.encode())):
        log.warning("Telegram webhook for %s refused: %s secret", tenant.id, "wrong" if given else "no")
        raise web.HTTPForbidden(text="wrong or missing secret token")
    return tenant


async def update(request: web.Request) -> web.Response:
    tenant = _webhook_tenant(request)
    if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPDATE_BYTES, actual_size=request.content_length)
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    bots, files = request.app[CLIENTS].open(request.app[SETTINGS])
    bot = bots.bot(tenant)
    try:
        outcome = await inbound.receive(request.app[STORE], tenant, bot, files, inbound.parse(data, bot))
    except inbound.MalformedUpdate as exc:
        log.error("Telegram update for %s refused: %s", tenant.id, exc)
        raise web.HTTPBadRequest(text=str(exc)) from None
    except _STORE_ERRORS:
        log.exception("Telegram update for %s not stored; answering 5xx so Telegram retries", tenant.id)
        raise web.HTTPInternalServerError(text="the update could not be stored; retry") from None
    log.debug("Telegram update %s for %s: %s", data.get("update_id"), tenant.id, outcome)
    return web.Response(text="ok")
