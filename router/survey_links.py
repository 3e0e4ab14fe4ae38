"""Signed one-click rating links for survey email.

A link names the tenant, the conversation and the rating, signed (HMAC-SHA256) with the
tenant's survey key kept in the store: made on first use, the same for every process, and
rotated without breaking links already sent (the previous keys still verify, as a key
ring: router/keyring.py). Editing any part of a link (another rating, another
conversation, another tenant) breaks its signature, so nobody rates a conversation that is
not theirs, or with a rating they did not click.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import msgspec

from router.errors import ContactRouterError
from router.keyring import KeyRing
from router.keys import Keys
from router.store import Store, text

KEPT_KEYS = 5  # earlier keys that still verify the links in mail already sent
PATH = "/survey/{tenant}/{token}"
MAC_BYTES = 16


class BadLink(ContactRouterError, ValueError):
    """A rating link we did not make for this tenant, or one that was altered."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


async def key_ring(store: Store, tenant: str) -> KeyRing:
    """The tenant's survey keys, newest first: the newest signs, every one verifies."""
    keys = Keys(tenant)
    await store.redis.set(keys.survey_signing_key, secrets.token_urlsafe(32), nx=True)
    current = await store.redis.get(keys.survey_signing_key)
    previous = await store.redis.lrange(keys.survey_previous_signing_keys, 0, -1)
    return KeyRing((text(current), *(text(key) for key in previous)))


async def rotate(store: Store, tenant: str) -> None:
    """A new key signs from now on; the one before joins the KEPT_KEYS that still verify."""
    keys = Keys(tenant)
    current = (await key_ring(store, tenant)).current
    async with store.redis.pipeline(transaction=True) as pipe:  # one tenant: one hash tag, one slot
        pipe.lpush(keys.survey_previous_signing_keys, current)
        pipe.ltrim(keys.survey_previous_signing_keys, 0, KEPT_KEYS - 1)
        pipe.set(keys.survey_signing_key, secrets.token_urlsafe(32))
        await pipe.execute()


def _mac(key: str, payload: bytes) -> bytes:
    return hmac.new(key.encode(), payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(ring: KeyRing, tenant: str, conversation: str, rating: int) -> str:
    payload = msgspec.msgpack.encode([tenant, conversation, rating])
    return f"{_b64(payload)}.{_b64(_mac(ring.current, payload))}"


def read_token(ring: KeyRing, tenant: str, token: str) -> tuple[str, int]:
    """(conversation, rating) of a link made for this tenant with one of the ring's keys;
    BadLink otherwise."""
    try:
        body, mac = token.split(".")
        payload, given = _unb64(body), _unb64(mac)
    except ValueError as exc:  # not two parts, or not base64
        raise BadLink(f"not a rating link: {exc}") from None
    if not ring.any(lambda key: hmac.compare_digest(_mac(key, payload), given)):
        raise BadLink("the link's signature does not match")
    try:
        owner, conversation, rating = msgspec.msgpack.decode(payload, type=tuple[str, str, int])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadLink(f"not a rating link: {exc}") from None
    if owner != tenant or not 1 <= rating <= 5:
        raise BadLink("not a rating link of this tenant")
    return conversation, rating


def url(base_url: str, tenant: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/survey/{tenant}/{token}"


async def rating_links(store: Store, base_url: str, tenant: str, conversation: str) -> dict[int, str]:
    """The five links of a survey email, by rating."""
    ring = await key_ring(store, tenant)
    return {n: url(base_url, tenant, make_token(ring, tenant, conversation, n)) for n in range(1, 6)}
