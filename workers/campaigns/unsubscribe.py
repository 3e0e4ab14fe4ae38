"""One-click unsubscribe (RFC 8058) for campaign email, served by the web process.

Every campaign email carries `List-Unsubscribe: <URL>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click`. The URL holds the address, channel and campaign, signed
with the tenant's own key (HMAC-SHA256), so nobody can unsubscribe someone else by
editing it. A POST honours it at once (the address joins the tenant's suppression
list, which the send script checks before every message); a GET only shows a
button, because mail scanners follow links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from collections.abc import Sequence

import msgspec
from aiohttp import web

from router import bus, events
from router.appkeys import DEPLOYMENT, STORE
from router.errors import ContactRouterError, UnknownTenant
from router.keys import Keys
from router.store import Store

PATH = "/unsubscribe/{tenant}/{token}"
POST_HEADER = "List-Unsubscribe=One-Click"


class BadToken(ContactRouterError, ValueError):
    """A link that was not made by us for this tenant (or was altered)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


KEPT_KEYS = 5  # earlier keys that still verify the links in mail already sent


async def signing_key(store: Store, tenant: str) -> bytes:
    """The tenant's key, made on first use (SET NX: every process ends up with the same one)."""
    key = Keys(tenant).campaign_signing_key
    await store.redis.set(key, secrets.token_bytes(32), nx=True)
    return await store.redis.get(key)


async def verifying_keys(store: Store, tenant: str) -> list[bytes]:
    """The key that signs now, then the KEPT_KEYS before it, newest first: a link in a
    mail sent before a rotation must still unsubscribe (CAN-SPAM: for 30 days at least)."""
    current = await signing_key(store, tenant)
    return [current, *await store.redis.lrange(Keys(tenant).campaign_previous_signing_keys, 0, -1)]


async def rotate_signing_key(store: Store, tenant: str) -> None:
    """A new key signs from the campaigns workers' next start; the old one joins the kept ones."""
    keys = Keys(tenant)
    current = await signing_key(store, tenant)
    async with store.redis.pipeline(transaction=True) as pipe:  # one tenant: one hash tag, one slot
        pipe.lpush(keys.campaign_previous_signing_keys, current)
        pipe.ltrim(keys.campaign_previous_signing_keys, 0, KEPT_KEYS - 1)
        pipe.set(keys.campaign_signing_key, secrets.token_bytes(32))
        await pipe.execute()


def make_token(key: bytes, tenant: str, channel: str, address: str, campaign: str) -> str:
    payload = msgspec.msgpack.encode([tenant, channel, address, campaign])
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def read_token(key: bytes | Sequence[bytes], tenant: str, token: str) -> tuple[str, str, str]:
    """(channel, address, campaign) of a token made for this tenant with the key (or one of
    the keys), else BadToken."""
    keys = [key] if isinstance(key, bytes) else list(key)
    try:
        body, mac = token.split(".")
        payload, given = _unb64(body), _unb64(mac)
        matched = [hmac.compare_digest(hmac.new(k, payload, hashlib.sha256).digest()[:16], given) for k in keys]
        if not any(matched):
            raise BadToken("signature does not match")
        owner, channel, address, campaign = msgspec.msgpack.decode(payload, type=tuple[str, str, str, str])
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadToken(str(exc)) from None
    if owner != tenant or channel not in events.CHANNELS:
        raise BadToken("not a link of this tenant")
    return channel, address, campaign


def url(public_url: str, tenant: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{tenant}/{token}"


async def unsubscribe(store: Store, tenant: str, channel: str, address: str, campaign: str) -> bool:
    """Suppress the address on the channel (and record it); True if it was not suppressed yet."""
    keys = Keys(tenant)
    event = events.OptedOut(
        tenant=tenant, occurred_at=events.now_ms(), channel=channel, address=address, keyword=f"unsubscribe:{campaign}"
    )
    added = await store.redis.sadd(keys.suppression(channel), address)
    # Once per link and address: a repeated click, or a command replayed after a lost
    # answer, must not count the opt-out twice in the campaign's results.
    await bus.publish(store, keys.events, event, dedup=f"unsubscribe:{campaign}:{channel}:{address}")
    return bool(added)


async def _verified(request: web.Request) -> tuple[Store, str, str, str, str]:
    store, tenant = request.app[STORE], request.match_info["tenant"]
    try:
        request.app[DEPLOYMENT].tenant(tenant)
    except UnknownTenant:
        raise web.HTTPNotFound(text="unknown link") from None
    try:
        channel, address, campaign = read_token(
            await verifying_keys(store, tenant), tenant, request.match_info["token"]
        )
    except BadToken:
        raise web.HTTPNotFound(text="unknown link") from None
    return store, tenant, channel, address, campaign


async def confirm_page(request: web.Request) -> web.Response:
    _store, _tenant, _channel, address, _campaign = await _verified(request)
    page = (
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop messages to {html.escape(address)}?</p>"
        f"<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
        "<button>Unsubscribe</button></form>"
    )
    return web.Response(text=page, content_type="text/html")


async def one_click(request: web.Request) -> web.Response:
    store, tenant, channel, address, campaign = await _verified(request)
    await unsubscribe(store, tenant, channel, address, campaign)
    return web.Response(text="You are unsubscribed.\n")


def setup(app: web.Application) -> None:
    """Mount the unsubscribe endpoint on the web process."""
    app.router.add_get(PATH, confirm_page)
    app.router.add_post(PATH, one_click)
