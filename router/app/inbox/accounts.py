"""Inbox accounts: logins with Argon2id password hashes, a role, and memberships.

A membership ties a login to a tenant, and in that tenant to the agent it acts as
(empty for a supervisor who watches a tenant without taking contacts). Admins see
every tenant. Repeated failures lock the name typed out for a while, from the client
that failed (and, after failures from many clients, name-wide), whether or not such a
login exists, so the lock-out does not reveal which do: router/app/inbox/lockout.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from typing import Literal

import argon2
import msgspec
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from router import i18n
from router.app.inbox import lockout
from router.config import Deployment, Tenant
from router.errors import ContactRouterError, UnknownTenant
from router.keys import AccountKeys
from router.store import Store

Role = Literal["agent", "supervisor", "admin"]
ROLES: tuple[str, ...] = ("agent", "supervisor", "admin")
LOGIN = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,62}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 takes anything; a cap keeps a huge form field from costing CPU
MAX_FAILURES = lockout.MAX_FAILURES
NAME_MAX_FAILURES = lockout.NAME_MAX_FAILURES
LOCK_SECONDS = lockout.LOCK_SECONDS
CLIENT_MAX_FAILURES = 30  # Settings.login_client_failures's default

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


class Throttled(Exception):
    """Too many failed logins from this client, whatever the names: try again at `until`."""

    def __init__(self, until: float) -> None:
        super().__init__("throttled")
        self.until = until


class User(msgspec.Struct, frozen=True, kw_only=True):
    login: str
    role: str
    memberships: dict[str, str]  # tenant -> agent id ("" : watches the tenant, takes no contacts)
    name: str = ""
    failures: int = 0
    second_factor: bool = False  # a TOTP secret is confirmed (router/app/inbox/second_factor.py)
    locale: str = ""  # the desk's language this user chose (router/i18n.py); "" follows the browser

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
        failures=int(fields.get("failures") or 0),
        second_factor=bool(fields.get("totp_secret")),
        locale=fields.get("locale", ""),
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


async def authenticate(
    store: Store, login: str, password: str, *, client: str, client_limit: int = CLIENT_MAX_FAILURES
) -> User:
    """The user, if the password is right and nothing locks it out from this client; else
    LoginFailed, or Throttled for a client past client_limit failures (router/app/inbox/
    lockout.py has the counters and why).

    Every name typed is counted alike, existing or not, so the lock-out cannot tell anyone
    which logins exist, and every attempt not throttled pays for one Argon2 verification,
    locked or not, known or not: the answer takes as long whatever the case.

    An attempt is counted before it is judged, in the transaction that reads the locks:
    guesses sent in parallel cannot all be judged before their failures are counted. The
    attempt numbered past a limit in its window is refused unjudged and locks.
    """
    attempt = lockout.Attempt.of(login, client)
    try:
        login = check_login(login)
    except AccountError:
        login = ""
    # "-" is no valid login: an unknown name costs the same round trip
    record, counted = await lockout.count(
        store, attempt, AccountKeys.user(login or "-"), AccountKeys.user_clients(login or "-")
    )
    if counted.client_failures > client_limit:
        raise Throttled(await lockout.throttled(store, attempt, counted))
    user = _user(record) if login and record else None
    digest = record.get(b"hash", b"").decode() if user else ""
    try:
        await asyncio.to_thread(HASHER.verify, digest or _DECOY, password[:MAX_PASSWORD])
        ok = user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    # While the name is locked, a right password still gets in from a client the login
    # uses, or goes on to its second factor: strangers cannot keep its owner out.
    through_name_lock = ok and user is not None and (counted.known_client or user.second_factor)
    if counted.pair_locked_until > attempt.at:
        await lockout.refused_by_lock(store, attempt)
        raise LoginFailed(counted.pair_locked_until)
    if counted.name_locked_until > attempt.at and not through_name_lock:
        await lockout.refused_by_lock(store, attempt)
        raise LoginFailed(counted.name_locked_until)
    over_pair = counted.pair_tries > MAX_FAILURES  # came in behind as many attempts as a window allows
    over_name = counted.name_tries > NAME_MAX_FAILURES and not through_name_lock
    if not ok or over_pair or over_name:
        until = await lockout.failed(
            store,
            attempt,
            counted,
            login=user.login if user else "",
            client_limit=client_limit,
            lock_pair=counted.pair_tries >= MAX_FAILURES,
            lock_name=counted.name_tries >= NAME_MAX_FAILURES and not through_name_lock,
        )
        raise LoginFailed(until)
    assert user is not None
    await lockout.succeeded(store, attempt, user.login)
    await store.redis.hset(
        AccountKeys.user(user.login), mapping={"failures": "0", "last_login_at": str(int(time.time()))}
    )
    if HASHER.check_needs_rehash(digest):  # the library's cost went up since this hash was made
        await store.redis.hset(AccountKeys.user(user.login), "hash", await asyncio.to_thread(HASHER.hash, password))
    return msgspec.structs.replace(user, failures=0)


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


async def set_locale(store: Store, login: str, locale: str) -> None:
    """The desk's language for this login ("" : the browser's); one of router.i18n.locales()."""
    if locale and locale not in i18n.locales():
        raise AccountError(f"no catalogue for {locale!r}: one of {', '.join(i18n.locales())}")
    if await get(store, login) is None:
        raise AccountError(f"no user {login!r}")
    await store.redis.hset(AccountKeys.user(login), "locale", locale)


async def unlock(store: Store, login: str) -> None:
    """Lift every lock of a login: from each client, name-wide, and of its second step."""
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    await lockout.lift_login(store, user.login)
    await store.redis.hset(AccountKeys.user(user.login), "failures", "0")


async def remove(store: Store, login: str) -> None:
    user = await get(store, login)
    if user is None:
        raise AccountError(f"no user {login!r}")
    await end_sessions(store, user.login)
    await lockout.lift_login(store, user.login)
    async with store.redis.pipeline(transaction=True) as pipe:
        for key in (
            AccountKeys.user(user.login),
            AccountKeys.user_clients(user.login),
            AccountKeys.enrolment(user.login),
            AccountKeys.recovery_codes(user.login),
            AccountKeys.totp_step(user.login),
        ):
            pipe.delete(key)
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
