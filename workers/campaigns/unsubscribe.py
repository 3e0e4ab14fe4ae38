"""Unsubscribing from campaign email: by mail (RFC 2369 mailto:, the `smtp` process) and
in one click (RFC 8058, the web process).

Every campaign email carries `List-Unsubscribe: <mailto:ADDRESS?subject=unsubscribe%20TOKEN>`,
ADDRESS being the tenant's own address (one the `smtp` process receives mail for). With an
https PUBLIC_URL it also carries the one-click link first, `<https://.../unsubscribe/...>`,
and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; RFC 8058 allows one-click only
over https, so with an http PUBLIC_URL (`contactrouter up`'s) the mailto is the header's only
way. The token holds the address, channel and campaign, signed with the tenant's own key
(HMAC-SHA256), so nobody can unsubscribe someone else by editing it or writing a subject.

A mail whose subject carries a token signed for the tenant it was sent to unsubscribes the
address at once (by_mail, one of the smtp process's claims), whoever sent it: as the link,
the signed token is what proves it. A POST to the link does the same; a GET only shows a
button, because mail scanners follow links. Either way the address joins the tenant's
suppression list, which the send script and the dispatcher check before every message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import re
import secrets
from collections.abc import Sequence
from urllib.parse import quote

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from router import bus, events
from router.appkeys import DEPLOYMENT, STORE
from router.campaigns.model import email_unsubscribe_problem
from router.config import Tenant
from router.errors import ContactRouterError, UnknownTenant
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

PATH = "/unsubscribe/{tenant}/{token}"
POST_HEADER = "List-Unsubscribe=One-Click"
MAILTO_SUBJECT = "unsubscribe"  # the mailto's subject: this word, a space, the token
# A token in a subject (a mail client may add "Re:" or keep the word's case its own way).
SUBJECT_TOKEN = re.compile(rf"\b{MAILTO_SUBJECT}\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)


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


def mailto(address: str, token: str) -> str:
    """The RFC 2369 mailto: whose mail unsubscribes the token's address (RFC 6068 escaping)."""
    return f"mailto:{quote(address, safe='@+')}?subject={MAILTO_SUBJECT}%20{token}"


def one_click_allowed(public_url: str) -> bool:
    """Whether links on this PUBLIC_URL may be one-click (RFC 8058 section 3.1: https only)."""
    return public_url.lower().startswith("https://")


class NoUnsubscribe(ContactRouterError, ValueError):
    """A campaign email that could carry no working way to unsubscribe: never sent."""


def headers(tenant: Tenant, public_url: str, token: str) -> dict[str, str]:
    """An email's unsubscribe headers, as OutboundMessage metadata (header:...): the one-click
    link first when PUBLIC_URL is https, and always the mailto:; NoUnsubscribe without one."""
    reason = email_unsubscribe_problem(tenant)
    if reason:
        raise NoUnsubscribe(reason)
    ways = [mailto(tenant.email.sender(), token)]
    found: dict[str, str] = {}
    if one_click_allowed(public_url):
        ways.insert(0, url(public_url, tenant.id, token))
        found["header:List-Unsubscribe-Post"] = POST_HEADER
    found["header:List-Unsubscribe"] = ", ".join(f"<{way}>" for way in ways)
    return found


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


async def by_subject(store: Store, tenant: str, subject: str) -> tuple[str, str, str] | None:
    """Unsubscribe what a mail's subject asks, if it carries a token of this tenant:
    (channel, address, campaign), else None (no token, or not one signed for the tenant)."""
    found = SUBJECT_TOKEN.search(subject)
    if found is None:
        return None
    try:
        channel, address, campaign = read_token(await verifying_keys(store, tenant), tenant, found.group(1))
    except BadToken:
        return None
    await unsubscribe(store, tenant, channel, address, campaign)
    return channel, address, campaign


async def by_mail(
    store: Store, tenants: list[tuple[Tenant, str]], subject: str, provider_id: str
) -> tuple[str | None, list[tuple[Tenant, str]]]:
    """The smtp process's claim on a mail sent to a campaign email's mailto: unsubscribe
    (channels.email.inbound.Claim): the tenants whose token it carries are answered here,
    the others (a subject that only looks like one) are left to take it in as email.
    A store that fails answers 451, so the sender's server tries again."""
    if SUBJECT_TOKEN.search(subject) is None:
        return None, tenants
    left, done = [], []
    try:
        for tenant, to in tenants:
            found = await by_subject(store, tenant.id, subject)
            if found is None:
                left.append((tenant, to))
            else:
                done.append(f"{found[1]} of {tenant.id}")
    except (RedisError, OSError) as exc:
        log.error("unsubscribe mail %s not taken in (%r); the sender will retry", provider_id, exc)
        return "451 4.3.0 temporary failure, try again later", tenants
    if not done:
        return None, tenants
    log.info("unsubscribe mail %s: %s unsubscribed", provider_id, ", ".join(done))
    return "250 2.0.0 OK: unsubscribed", left


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
