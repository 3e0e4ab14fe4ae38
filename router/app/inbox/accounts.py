"""Inbox accounts: logins with Argon2id password hashes, a role, and memberships.

A membership ties a login to a tenant, and in that tenant to the agent it acts as
(empty for a supervisor who watches a tenant without taking contacts). Admins see
every tenant. Repeated failures lock the name typed for a while, whether or not such
a login exists (so the lock-out does not reveal which do); the count lives in a
counter of its own that expires, and a lock is also kept on the user's hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from typing import Literal

import argon2
import msgspec
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from router.config import Deployment, Tenant
from router.errors import ContactRouterError, UnknownTenant
from router.keys import AccountKeys
from router.store import Store

Role = Literal["agent", "supervisor", "admin"]
ROLES: tuple[str, ...] = ("agent", "supervisor", "admin")
LOGIN = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,62}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 takes anything; a cap keeps a huge form field from costing CPU
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
MAX_LOGIN_TYPED = 256  # of a typed login, what counts towards its lock

HASHER = argon2.PasswordHasher()  # Argon2id with the library's current recommended cost
# Verified when the login does not exist, so a wrong login costs as much as a wrong password.
_DECOY = HASHER.hash("decoy password nobody has")


class AccountError(ContactRouterError, ValueError):
    """A bad login, role, password or membership; the message says which."""


class LoginFailed(Exception):
    """Wrong login or password, or the login is locked (the page says no more than that)."""

    def __init__(self, locked_until: float = 0.0) -> None:
        super().__init__("wrong login or password" if not locked_until else "locked")
        self.locked_until = locked_until


class User(msgspec.Struct, frozen=True, kw_only=True):
    login: str
    role: str
    memberships: dict[str, str]  # tenant -> agent id ("" : watches the tenant, takes no contacts)
    name: str = ""
    locked_until: float = 0.0
    failures: int = 0

    def tenants(self, deployment: Deployment) -> list[str]:
        """The tenants this user may see, in the deployment's order."""
        if self.role == "admin":
            return [t.id for t in deployment.tenants]
        return [t.id for t in deployment.tenants if t.id in self.memberships]

    def agent_in(self, tenant: str) -> str:
        """The agent this user acts as in a tenant, or ""."""
        return self.memberships.get(tenant, "")

    def seats(self, deployment: Deployment) -> list[tuple[Tenant, str]]:
        """The tenants where this user takes contacts, each with the agent it acts as there."""
        return [(deployment.tenant(t), self.agent_in(t)) for t in self.tenants(deployment) if self.agent_in(t)]

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "admin")


def check_login(login: str) -> str:
    login = login.strip().lower()
    if not LOGIN.fullmatch(login):
        raise AccountError(f"login {login!r}: use 1-63 of a-z 0-9 . _ @ -, starting with a letter or digit")
    return login


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")


def parse_memberships(deployment: Deployment, specs: list[str], tenants: list[str] = ()) -> dict[str, str]:
    """`acme:alice` (act as agent alice in acme) and bare tenants (watch only), checked
    against the deployment so a typo is refused rather than stored."""
    memberships: dict[str, str] = {}
    for spec in [*specs, *tenants]:
        tenant_id, _, agent = spec.partition(":")
        try:
            tenant = deployment.tenant(tenant_id)
        except UnknownTenant:
            raise AccountError(f"{spec}: no tenant {tenant_id!r}") from None
        if agent and agent not in {a.id for a in tenant.agents}:
            raise AccountError(f"{spec}: no agent {agent!r} in tenant {tenant_id!r}")
        if memberships.get(tenant_id) and agent and memberships[tenant_id] != agent:
            raise AccountError(f"{spec}: already agent {memberships[tenant_id]!r} in {tenant_id!r}")
        memberships[tenant_id] = agent or memberships.get(tenant_id, "")
    return memberships


def _user(record: dict[bytes, bytes]) -> User:
    fields = {k.decode(): v.decode() for k, v in record.items()}
    return User(
        login=fields["login"],
        role=fields["role"],
        memberships=json.loads(fields.get("memberships") or "{}"),
        name=fields.get("name", ""),
        locked_until=float(fields.get("locked_until") or 0),
        failures=int(fields.get("failures") or 0),
    )


async def get(store: Store, login: str) -> User | None:
    try:
        login = check_login(login)
    except AccountError:
        return None
    record = await store.redis.hgetall(AccountKeys.user(login))
    return _user(record) if record else None


async def add(
    store: Store,
    login: str,
    password: str,
    role: str,
    memberships: dict[str, str],
    *,
    name: str = "",
    replace: bool = False,
) -> User:
    """Create a user (or, with replace, set one's password, role and memberships)."""
    login = check_login(login)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if role == "agent" and not any(memberships.values()):
        raise AccountError("an agent account needs at least one --agent TENANT:AGENT")
    check_password(password)
    digest = await asyncio.to_thread(HASHER.hash, password)
    key = AccountKeys.user(login)
    fields = {
        "login": login,
        "hash": digest,
        "role": role,
        "memberships": json.dumps(memberships, sort_keys=True),
        "name": name,
        "failures": "0",
        "locked_until": "0",
        "password_changed_at": str(int(time.time())),
    }
    if not replace:
        if not await store.redis.hsetnx(key, "login", login):
            raise AccountError(f"user {login!r} exists (use `user passwd` to change the password)")
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.sadd(AccountKeys.users, login)
        await pipe.execute()
    if replace:
        await end_sessions(store, login)
    return User(login=login, role=role, memberships=memberships, name=name)


def _attempts_key(login: str) -> str:
    """The failure counter of whatever was typed as a login, existing or not. A digest,
    so a long or odd string costs a fixed-size key."""
    digest = hashlib.sha256(login.strip().lower()[:MAX_LOGIN_TYPED].encode()).hexdigest()[:32]
    return f"{AccountKeys.base}:attempts:{digest}"


async def authenticate(store: Store, login: str, password: str) -> User:
    """The user, if the password is right and the login not locked; else LoginFailed.

    Every name typed is counted alike, existing or not, so the lock-out cannot tell
    anyone which logins exist: MAX_FAILURES failures within LOCK_SECONDS of each other
    lock that name for LOCK_SECONDS (even against the right password). A counter
    expires LOCK_SECONDS after its last attempt, and every attempt pays for one Argon2
    verification, so the counters stay few. Known and unknown names, locked or not,
    cost the same work: one hash read, one verification, one pipeline.

    An attempt is counted before it is judged, in the transaction that reads the lock:
    guesses sent in parallel cannot all be judged before their failures are counted.
    The attempt numbered past MAX_FAILURES in a window is refused unjudged and locks
    the name; a right password clears the count.
    """
    now = time.time()
    attempts = _attempts_key(login)
    try:
        login = check_login(login)
    except AccountError:
        login = ""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(AccountKeys.user(login or "-"))  # "-" is no valid login: the same round trip
        pipe.hget(attempts, "locked_until")
        pipe.hincrby(attempts, "tries", 1)
        pipe.expire(attempts, LOCK_SECONDS)
        record, counted_lock, tries, _ = await pipe.execute()
    user = _user(record) if login and record else None
    locked_until = max(float(counted_lock or 0), user.locked_until if user else 0.0)
    digest = record.get(b"hash", b"").decode() if user else ""
    try:
        # Verified even for a locked or unknown login: the answer takes as long whatever the case.
        await asyncio.to_thread(HASHER.verify, digest or _DECOY, password[:MAX_PASSWORD])
        ok = user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if locked_until > now:
        # refused by the lock, not judged: not counted towards the next one either
        await store.redis.hincrby(attempts, "tries", -1)
        raise LoginFailed(locked_until)
    if tries > MAX_FAILURES:  # came in behind as many attempts as a window allows
        raise LoginFailed(await _lock(store, attempts, user, now))
    if not ok:
        async with store.redis.pipeline(transaction=False) as pipe:
            if user is not None:  # for `user list`
                pipe.hincrby(AccountKeys.user(user.login), "failures", 1)
            else:  # the same round trip, so a known login answers no slower than an unknown one
                pipe.exists(attempts)
            await pipe.execute()
        raise LoginFailed(await _lock(store, attempts, user, now) if tries >= MAX_FAILURES else 0.0)
    assert user is not None
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(attempts)
        pipe.hset(
            AccountKeys.user(user.login), mapping={"failures": "0", "locked_until": "0", "last_login_at": str(int(now))}
        )
        await pipe.execute()
    if HASHER.check_needs_rehash(digest):  # the library's cost went up since this hash was made
        await store.redis.hset(AccountKeys.user(user.login), "hash", await asyncio.to_thread(HASHER.hash, password))
    return msgspec.structs.replace(user, failures=0, locked_until=0.0)


async def _lock(store: Store, attempts: str, user: User | None, now: float) -> float:
    """Lock the name typed (and the user, if it is one) for LOCK_SECONDS; returns the lock's end."""
    until = now + LOCK_SECONDS
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(attempts, mapping={"tries": "0", "locked_until": str(until)})
        pipe.expire(attempts, LOCK_SECONDS)
        if user is not None:  # kept on the user too, for `user list` and `user unlock`
            pipe.hset(AccountKeys.user(user.login), mapping={"failures": "0", "locked_until": str(until)})
        await pipe.execute()
    return until


async def set_password(store: Store, login: str, password: str) -> None:
    """A new password; every session of the login ends (whoever had it is logged out)."""
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    check_password(password)
    digest = await asyncio.to_thread(HASHER.hash, password)
    await store.redis.hset(
        AccountKeys.user(user.login), mapping={"hash": digest, "password_changed_at": str(int(time.time()))}
    )
    await end_sessions(store, user.login)


async def unlock(store: Store, login: str) -> None:
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(AccountKeys.user(user.login), mapping={"failures": "0", "locked_until": "0"})
        pipe.delete(_attempts_key(user.login))
        await pipe.execute()


async def remove(store: Store, login: str) -> None:
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    await end_sessions(store, user.login)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(AccountKeys.user(user.login))
        pipe.srem(AccountKeys.users, user.login)
        await pipe.execute()


async def all_users(store: Store) -> list[User]:
    logins = sorted(m.decode() for m in await store.redis.smembers(AccountKeys.users))
    users = [await get(store, login) for login in logins]
    return [u for u in users if u is not None]


async def end_sessions(store: Store, login: str) -> None:
    sessions_key = AccountKeys.user_sessions(login)
    digests = [d.decode() for d in await store.redis.smembers(sessions_key)]
    async with store.redis.pipeline(transaction=True) as pipe:
        for digest in digests:
            pipe.delete(AccountKeys.session(digest))
        pipe.delete(sessions_key)
        await pipe.execute()


async def demo_accounts(store: Store, deployment: Deployment) -> dict[str, str]:
    """`contactrouter up`'s logins: one per agent of the deployment (login = agent id) and
    a `supervisor` of every tenant, each with a fresh random password for this start."""
    passwords: dict[str, str] = {}
    for tenant in deployment.tenants:
        for agent in tenant.agents:
            login = check_login(agent.id)
            if login in passwords:
                continue  # the same id in two tenants: the first one's agent
            passwords[login] = secrets.token_urlsafe(12)
            await add(store, login, passwords[login], "agent", {tenant.id: agent.id}, name=agent.name, replace=True)
    passwords["supervisor"] = secrets.token_urlsafe(12)
    watched = {tenant.id: "" for tenant in deployment.tenants}
    await add(store, "supervisor", passwords["supervisor"], "supervisor", watched, name="Supervisor", replace=True)
    return passwords
