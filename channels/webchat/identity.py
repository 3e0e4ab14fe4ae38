"""Who a web chat visitor is.

An anonymous visitor gets a token signed with the server's secret (HMAC-SHA256,
with an expiry and the tenant inside), kept in the browser's localStorage, so a
reload or a second tab is the same visitor with the same history. A tenant's own
site can name a known customer instead: it signs "email:<address>" or "id:<id>"
with the tenant's identity secret, and anything unsigned or wrongly signed is
refused rather than trusted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any

from router.config.webchat import WebchatChannel
from router.errors import ContactRouterError
from router.keyring import KeyRing, ring
from router.keys import WEBCHAT_PREVIOUS_SECRET, WEBCHAT_SECRET
from router.settings import Settings
from router.store import Store, text

log = logging.getLogger(__name__)

TOKEN_TTL_S = 90 * 24 * 3600  # renewed at every connection, so only an abandoned browser expires
IDENTITY_KINDS = ("email", "id")
ANONYMOUS = re.compile(r"v-[0-9a-f]{32}")
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,63}")


class Refused(ContactRouterError, ValueError):
    """A token or an identity that does not check out; `code` names why, for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_visitor() -> str:
    """A fresh anonymous visitor id: 128 random bits, unguessable."""
    return "v-" + secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _mac(secret: str, purpose: str, payload: str) -> str:
    # The purpose is part of the signed text, so no signature made with this secret
    # for one purpose (a visitor token) can ever pass for another (a file link).
    return _b64(hmac.new(secret.encode(), f"{purpose}:{payload}".encode(), hashlib.sha256).digest())


def seal(secret: KeyRing | str, purpose: str, claims: dict[str, Any]) -> str:
    """Claims signed with the server's (newest) secret for one purpose: base64url JSON, a
    dot, and its HMAC."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_mac(ring(secret).current, purpose, payload)}"


def unseal(secret: KeyRing | str, purpose: str, sealed: str, *, max_length: int) -> Any:
    """The claims of a string seal() made for this purpose with any of the secret's keys,
    else None (forged, too long or garbled)."""
    payload, _, mac = sealed.partition(".")
    if not payload or not mac or len(sealed) > max_length:
        return None
    if not ring(secret).any(lambda key: hmac.compare_digest(mac, _mac(key, purpose, payload))):
        return None
    try:
        return json.loads(_unb64(payload))
    except ValueError:
        return None


def sign_token(secret: KeyRing | str, tenant: str, visitor: str, *, now: float | None = None) -> str:
    """A visitor token: base64url JSON {t, v, exp}, a dot, and its HMAC."""
    expires = int((time.time() if now is None else now) + TOKEN_TTL_S)
    return seal(secret, "webchat-visitor", {"t": tenant, "v": visitor, "exp": expires})


def verify_token(secret: KeyRing | str, tenant: str, token: str, *, now: float | None = None) -> str:
    """The visitor a token names; raises Refused if it is forged, expired or another tenant's."""
    claims = unseal(secret, "webchat-visitor", token, max_length=1024)
    try:
        visitor, owner, expires = claims["v"], claims["t"], int(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise Refused("bad_token", "the visitor token is not valid") from None
    if owner != tenant:
        raise Refused("bad_token", "the visitor token belongs to another chat")
    if expires < (time.time() if now is None else now):
        raise Refused("token_expired", "the visitor token has expired")
    return str(visitor)


def customer_signature(secret: str, kind: str, value: str) -> str:
    """What a tenant's server computes to vouch for a customer: hex HMAC-SHA256 of "kind:value"."""
    return hmac.new(secret.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def identified_visitor(webchat: WebchatChannel, kind: object, value: object, signature: object) -> str:
    """The visitor id of a customer the tenant's site vouched for, e.g. "email:jane@example.com".

    Raises Refused unless the tenant has an identity secret and the signature is its HMAC.
    """
    keys = KeyRing(webchat.identity_secrets or ((webchat.identity_secret,) if webchat.identity_secret else ()))
    if not keys:
        raise Refused("identity_refused", "this chat does not accept identified customers")
    if kind not in IDENTITY_KINDS or not isinstance(value, str) or not isinstance(signature, str):
        raise Refused("identity_refused", "an identity needs kind (email or id), value and signature")
    pattern = _EMAIL if kind == "email" else _CUSTOMER_ID
    if not pattern.fullmatch(value):
        raise Refused("identity_refused", f"not a valid customer {kind}")
    given = signature.lower().encode()
    if not keys.any(lambda key: hmac.compare_digest(given, customer_signature(key, str(kind), value).encode())):
        raise Refused("identity_refused", "the customer's identity is not signed by this site")
    return f"{kind}:{value.lower() if kind == 'email' else value}"


async def server_secret(store: Store, settings: Settings) -> KeyRing:
    """The secret visitor tokens and file links are signed with: WEBCHAT_SECRET (during a
    rotation "NEW,OLD": router.keyring), else one generated once and kept in the store, so
    every web process (and a restarted one) signs alike, with the keys `rotate_secret` left
    behind still verifying."""
    if settings.webchat_secret:
        return KeyRing.parse(settings.webchat_secret)
    await store.redis.set(WEBCHAT_SECRET, secrets.token_urlsafe(32), nx=True)
    # two reads, not MGET: the keys have no common hash tag, so may be on two cluster shards
    current, previous = await store.redis.get(WEBCHAT_SECRET), await store.redis.get(WEBCHAT_PREVIOUS_SECRET)
    log.info("WEBCHAT_SECRET is not set: web chat tokens are signed with the secret kept in the store")
    return KeyRing((text(current), *([text(previous)] if previous else [])))


async def rotate_secret(store: Store) -> None:
    """A new store-kept secret signs from the web processes' next start; the old one keeps
    verifying for TOKEN_TTL_S (every visitor's token is re-signed when they next connect)."""
    current = await store.redis.get(WEBCHAT_SECRET)
    if current:  # kept first, so no moment passes where a token signed with it fails
        await store.redis.set(WEBCHAT_PREVIOUS_SECRET, current, ex=TOKEN_TTL_S)
    await store.redis.set(WEBCHAT_SECRET, secrets.token_urlsafe(32))
