"""The inbox's second factor: TOTP codes (RFC 6238, by pyotp) and one-time recovery codes.

Policy: supervisors and admins must have one; an agent must when one of their tenants
sets `second_factor_for_agents = "required"`, and may otherwise. A login that must and
has none gets a session that can only enrol (router/app/inbox/enrolment.py).

A secret is shown to its user once, kept aside until a code from it confirms it (so a
mistyped scan locks nobody out), then kept on the user's record: the store holds it as
the server must, to check codes. A code is accepted once: each accepted time step is
recorded, and a code of that step or an earlier one is refused (ZADD GT: one command, so
two requests with the same code cannot both pass). Recovery codes are random, shown once
and kept as SHA-256 digests (they are long and random, so a fast hash is enough); using
one removes it (SREM: once, however many requests race).

A login whose password was right and that has a second factor is *pending*: a short-lived
record under the SHA-256 of a cookie of its own, with a few tries, and no session until
the code is right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import time

import msgspec
import pyotp
import segno

from router.app.inbox.accounts import AccountError, User, end_sessions, get
from router.config import Deployment
from router.keys import AccountKeys
from router.store import Store, text

ISSUER = "Contact router"  # what authenticator apps show above the code
VALID_STEPS = 1  # a code of the step before or after the server's is accepted (clocks drift)
ENROLMENT_SECONDS = 15 * 60  # to scan the secret and confirm it with a code
RECOVERY_CODES = 10
PENDING_SECONDS = 5 * 60  # between a right password and its code
PENDING_TRIES = 5  # codes per pending login; then the password again
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


def required(user: User, deployment: Deployment) -> bool:
    """Whether policy requires this user to have a second factor."""
    if user.supervises:
        return True
    return any(t.second_factor_for_agents == "required" for t in deployment.tenants if t.id in user.memberships)


async def enrolment(store: Store, login: str) -> str:
    """The secret being enrolled for a login: the one shown already, or a new one."""
    key = AccountKeys.enrolment(login)
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    if not await store.redis.set(key, secret, nx=True, ex=ENROLMENT_SECONDS):
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.expire(key, ENROLMENT_SECONDS)  # still being scanned: kept as long again
            shown, _ = await pipe.execute()
        secret = text(shown or b"") or secret
    return secret


def provisioning_uri(secret: str, login: str) -> str:
    """The otpauth:// URI an authenticator app reads (from the QR code, or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The URI as a QR code: an SVG image, made here (no third party sees the secret)."""
    svg = io.BytesIO()
    segno.make(uri, error="m").save(svg, kind="svg", xmldecl=False, scale=4, dark="#000", light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode()


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


async def confirm(store: Store, login: str, code: str) -> list[str] | None:
    """Activate the secret being enrolled if the code is its current one: the new recovery
    codes (to show once); None if the code is wrong or no enrolment is open."""
    secret = text(await store.redis.get(AccountKeys.enrolment(login)) or b"")
    if not secret or not await _accept_totp(store, login, secret, code):
        return None
    return await activate(store, login, secret)


async def activate(store: Store, login: str, secret: str) -> list[str]:
    """Make `secret` the login's second factor, with new recovery codes (returned, to show once)."""
    if await get(store, login) is None:
        raise AccountError(f"no user {login!r}")
    codes = _recovery_codes()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(AccountKeys.user(login), mapping={"totp_secret": secret, "totp_enabled_at": str(int(time.time()))})
        pipe.delete(AccountKeys.enrolment(login), AccountKeys.recovery_codes(login))
        pipe.sadd(AccountKeys.recovery_codes(login), *(_code_digest(code) for code in codes))
        await pipe.execute()
    return codes


async def verify(store: Store, login: str, code: str) -> bool:
    """A current TOTP code not used before, or an unused recovery code (which is then spent)."""
    secret = text(await store.redis.hget(AccountKeys.user(login), "totp_secret") or b"")
    if not secret:
        return False
    if _looks_like_totp(code):
        return await _accept_totp(store, login, secret, code)
    normalised = _normalise_recovery(code)
    if not normalised:
        return False
    return bool(await store.redis.srem(AccountKeys.recovery_codes(login), _code_digest(normalised)))


async def new_recovery_codes(store: Store, login: str) -> list[str]:
    """Replace the login's recovery codes (the old ones stop working); returns the new ones."""
    codes = _recovery_codes()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(AccountKeys.recovery_codes(login))
        pipe.sadd(AccountKeys.recovery_codes(login), *(_code_digest(code) for code in codes))
        await pipe.execute()
    return codes


async def recovery_codes_left(store: Store, login: str) -> int:
    return int(await store.redis.scard(AccountKeys.recovery_codes(login)))


async def reset(store: Store, login: str) -> None:
    """Forget a login's second factor (a lost phone): its sessions end, and at its next
    login it enrols again if policy requires one."""
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hdel(AccountKeys.user(user.login), "totp_secret", "totp_enabled_at")
        pipe.delete(AccountKeys.recovery_codes(user.login), AccountKeys.totp_step(user.login))
        pipe.delete(AccountKeys.enrolment(user.login))
        await pipe.execute()
    await end_sessions(store, user.login)


async def _accept_totp(store: Store, login: str, secret: str, code: str) -> bool:
    """The code is the secret's for a step within VALID_STEPS of now, and later than any
    step accepted before (recorded here, atomically: a replay in the same step fails)."""
    code = code.strip().replace(" ", "")
    if not _looks_like_totp(code):
        return False
    totp = pyotp.TOTP(secret)
    now_step = int(time.time()) // totp.interval
    for step in range(now_step - VALID_STEPS, now_step + VALID_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            key = AccountKeys.totp_step(login)
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {"last": step}, gt=True, ch=True)  # 0: this step or a later one was used
                pipe.expire(key, 24 * 3600)  # older steps are outside the window anyway
                changed, _ = await pipe.execute()
            return bool(changed)
    return False


def _looks_like_totp(code: str) -> bool:
    code = code.strip().replace(" ", "")
    return len(code) == 6 and code.isascii() and code.isdigit()


def _recovery_codes() -> list[str]:
    """RECOVERY_CODES codes of 10 characters (about 49 bits each), written xxxxx-xxxxx."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _normalise_recovery(code: str) -> str:
    raw = "".join(code.lower().split()).replace("-", "")
    if len(raw) != 10 or any(ch not in _RECOVERY_ALPHABET for ch in raw):
        return ""
    return f"{raw[:5]}-{raw[5:]}"


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# The second step of a login.


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    login: str
    csrf: str


def _pending_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def begin(store: Store, login: str) -> tuple[str, Pending]:
    """A pending login after a right password: (its cookie's value, the record)."""
    token = secrets.token_urlsafe(32)
    pending = Pending(digest=_pending_digest(token), login=login, csrf=secrets.token_urlsafe(32))
    key = AccountKeys.pending_login(pending.digest)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"login": login, "csrf": pending.csrf, "tries": "0"})
        pipe.expire(key, PENDING_SECONDS)
        await pipe.execute()
    return token, pending


async def pending(store: Store, token: str) -> Pending | None:
    if not token or len(token) > 128:
        return None
    digest = _pending_digest(token)
    record = await store.redis.hgetall(AccountKeys.pending_login(digest))
    if not record or b"login" not in record:
        return None
    fields = {k.decode(): v.decode() for k, v in record.items()}
    return Pending(digest=digest, login=fields["login"], csrf=fields["csrf"])


async def try_pending(store: Store, pending: Pending) -> bool:
    """Count a code against the pending login before it is judged: False (and the pending
    login is gone) once it has had PENDING_TRIES."""
    key = AccountKeys.pending_login(pending.digest)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, "tries", 1)
        pipe.ttl(key)
        tries, ttl = await pipe.execute()
    if tries > PENDING_TRIES or ttl < 0:  # no expiry: it had expired, and the count made it anew
        await store.redis.delete(key)
        return False
    return True


async def end(store: Store, pending: Pending) -> None:
    await store.redis.delete(AccountKeys.pending_login(pending.digest))
