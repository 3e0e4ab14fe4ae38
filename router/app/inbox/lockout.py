"""Login throttling: who is refused before a password is judged, and for how long.

Three counters, each counted before the attempt is judged (in the transaction that reads
the locks, so guesses sent in parallel get no more answers than guesses sent one by one):

- a name from one client (`attempts`): MAX_FAILURES failures lock that pair for
  LOCK_SECONDS. A stranger's wrong guesses lock the stranger out, not the login's owner,
  who logs in from another address.
- a name from any client (`name_attempts`): NAME_MAX_FAILURES failures (so from several
  clients: one gets at most MAX_FAILURES) lock the name. While it is locked, a right
  password still gets in from a client the login last logged in from, or goes on to the
  second factor of a login that has one; anyone else is refused. Its wrong second-factor
  codes are counted here too: CODE_MAX_FAILURES lock the second step for everyone.
- a client across all names (`client_failures`, a sliding window of LOCK_SECONDS):
  past Settings.login_client_failures failures it is throttled (429) without a
  password being checked, until its oldest failure leaves the window.

A client is an address; an IPv6 address counts as its /64, which one host usually holds
whole. Every lock and throttle in force is also listed in one sorted set (AccountKeys.locks),
for the desk's locks page and `user list`; it names clients of known logins only for the
pair locks, so unknown names typed from anywhere do not fill it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import msgspec
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from router.keys import AccountKeys
from router.store import Store, text

MAX_FAILURES = 5  # of a name from one client
NAME_MAX_FAILURES = 25  # of a name from any clients
CODE_MAX_FAILURES = 10  # wrong second-factor codes of a login, from any clients
LOCK_SECONDS = 15 * 60
CLIENT_WINDOW_SECONDS = 15 * 60
MAX_LOGIN_TYPED = 256  # of a typed login, what counts towards its lock
MAX_CLIENT = 64  # of a client's address as kept (an X-Forwarded-For entry is whatever the proxy wrote)
KNOWN_CLIENTS = 10  # clients remembered per login: a right password from one passes a name lock
KNOWN_CLIENT_SECONDS = 30 * 24 * 3600

LockKind = Literal["pair", "name", "code", "client"]


class Lock(msgspec.Struct, frozen=True, kw_only=True):
    """A lock or throttle in force: a member of AccountKeys.locks, scored by its end."""

    kind: LockKind  # pair: a name from a client; name: a name; code: a login's second step; client: throttled
    name: str = ""  # the name typed (a login, for pair and code)
    client: str = ""
    until: float = 0.0  # not in the member: its score

    def member(self) -> str:
        return json.dumps({"kind": self.kind, "name": self.name, "client": self.client}, sort_keys=True)


def client_of(address: str) -> str:
    """The client an address counts as: itself, or for IPv6 its /64."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()[:MAX_CLIENT] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def typed_name(login: str) -> str:
    return login.strip().lower()[:MAX_LOGIN_TYPED]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Attempt:
    """One login attempt: the name typed and the client it came from."""

    name: str
    client: str
    at: float
    member: str  # this attempt in the client's window (removed again unless it fails)

    @classmethod
    def of(cls, login: str, address: str, at: float | None = None) -> Attempt:
        return cls(typed_name(login), client_of(address), time.time() if at is None else at, secrets.token_hex(8))

    @property
    def pair_key(self) -> str:
        return AccountKeys.attempts(_digest(self.name, self.client))

    @property
    def name_key(self) -> str:
        return AccountKeys.name_attempts(_digest(self.name))

    @property
    def client_key(self) -> str:
        return AccountKeys.client_failures(_digest(self.client))


class Counted(NamedTuple):
    """What the counting transaction saw, this attempt included."""

    pair_tries: int
    pair_locked_until: float
    name_tries: int
    name_locked_until: float
    client_failures: int
    client_oldest: float  # when the oldest failure in the client's window was
    known_client: bool  # the login (if it is one) last logged in from this client

    def client_free_at(self) -> float:
        """When the client's oldest failure leaves its window."""
        return self.client_oldest + CLIENT_WINDOW_SECONDS


async def count(store: Store, attempt: Attempt, user_key: str, clients_key: str) -> tuple[dict[bytes, bytes], Counted]:
    """Count the attempt against its three counters and read the locks, in one transaction;
    also read the user's record (user_key), so a login costs one round trip here."""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(user_key)
        pipe.hget(attempt.pair_key, "locked_until")
        pipe.hincrby(attempt.pair_key, "tries", 1)
        pipe.expire(attempt.pair_key, LOCK_SECONDS)
        pipe.hget(attempt.name_key, "locked_until")
        pipe.hincrby(attempt.name_key, "tries", 1)
        pipe.expire(attempt.name_key, LOCK_SECONDS)
        pipe.zremrangebyscore(attempt.client_key, "-inf", attempt.at - CLIENT_WINDOW_SECONDS)
        pipe.zadd(attempt.client_key, {attempt.member: attempt.at})
        pipe.zcard(attempt.client_key)
        pipe.zrange(attempt.client_key, 0, 0, withscores=True)
        pipe.expire(attempt.client_key, CLIENT_WINDOW_SECONDS)
        pipe.zscore(clients_key, attempt.client)
        (
            record,
            pair_lock,
            pair_tries,
            _,
            name_lock,
            name_tries,
            _,
            _,
            _,
            failures,
            oldest,
            _,
            seen,
        ) = await pipe.execute()
    return record, Counted(
        pair_tries=pair_tries,
        pair_locked_until=float(pair_lock or 0),
        name_tries=name_tries,
        name_locked_until=float(name_lock or 0),
        client_failures=failures,
        client_oldest=oldest[0][1] if oldest else attempt.at,
        known_client=seen is not None and float(seen) > attempt.at - KNOWN_CLIENT_SECONDS,
    )


async def throttled(store: Store, attempt: Attempt, counted: Counted) -> float:
    """The client is over its limit: the attempt is refused unjudged, so not counted at all
    (a throttled client that keeps trying is free again when its window has moved on);
    returns when it is. The desk lists the client."""
    until = counted.client_free_at()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.zrem(attempt.client_key, attempt.member)
        pipe.hincrby(attempt.pair_key, "tries", -1)
        pipe.hincrby(attempt.name_key, "tries", -1)
        _index(pipe, Lock(kind="client", client=attempt.client), until, attempt.at)
        await pipe.execute()
    return until


async def refused_by_lock(store: Store, attempt: Attempt) -> None:
    """Refused by a lock, not judged: not counted towards the name's next lock. It stays a
    failure of the client's, so a client that keeps trying a locked name is throttled."""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(attempt.pair_key, "tries", -1)
        pipe.hincrby(attempt.name_key, "tries", -1)
        await pipe.execute()


async def failed(
    store: Store, attempt: Attempt, counted: Counted, *, login: str, client_limit: int, lock_pair: bool, lock_name: bool
) -> float:
    """A judged failure (already counted): lock what reached its limit; returns the end of the
    lock that now stops this client from trying this name again, or 0. `login` is the
    user's, or "" for a name that is none (its lock is kept on the counter only)."""
    until = attempt.at + LOCK_SECONDS
    async with store.redis.pipeline(transaction=True) as pipe:
        if login:  # for `user list`; for an unknown name, the same round trip
            pipe.hincrby(AccountKeys.user(login), "failures", 1)
        else:
            pipe.exists(attempt.pair_key)
        if lock_pair:
            pipe.hset(attempt.pair_key, mapping={"tries": "0", "locked_until": str(until)})
            pipe.expire(attempt.pair_key, LOCK_SECONDS)
            if login:
                _index(pipe, Lock(kind="pair", name=login, client=attempt.client), until, attempt.at)
        if lock_name:
            pipe.hset(attempt.name_key, mapping={"tries": "0", "locked_until": str(until)})
            pipe.expire(attempt.name_key, LOCK_SECONDS)
            _index(pipe, Lock(kind="name", name=attempt.name), until, attempt.at)
        if counted.client_failures >= client_limit:
            _index(pipe, Lock(kind="client", client=attempt.client), counted.client_free_at(), attempt.at)
        await pipe.execute()
    return until if lock_pair or lock_name else 0.0


async def succeeded(store: Store, attempt: Attempt, login: str) -> None:
    """A right password: the pair's count is cleared, the attempt is no failure of the name's
    nor the client's, and the client is remembered as one the login uses."""
    clients = AccountKeys.user_clients(login)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(attempt.pair_key)
        pipe.hincrby(attempt.name_key, "tries", -1)
        pipe.zrem(attempt.client_key, attempt.member)
        pipe.zadd(clients, {attempt.client: attempt.at})
        pipe.zremrangebyrank(clients, 0, -KNOWN_CLIENTS - 1)
        pipe.expire(clients, KNOWN_CLIENT_SECONDS)
        await pipe.execute()


class CodeCount(NamedTuple):
    codes: int  # wrong codes in the window, this one included
    locked_until: float


async def count_code(store: Store, login: str, address: str) -> tuple[Attempt, CodeCount]:
    """Count a second-factor code before it is judged (parallel guesses cannot beat the cap),
    against the login's name and, should it be wrong, the client's window."""
    attempt = Attempt.of(login, address)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hget(attempt.name_key, "codes_locked_until")
        pipe.hincrby(attempt.name_key, "codes", 1)
        pipe.expire(attempt.name_key, LOCK_SECONDS)
        pipe.zremrangebyscore(attempt.client_key, "-inf", attempt.at - CLIENT_WINDOW_SECONDS)
        pipe.zadd(attempt.client_key, {attempt.member: attempt.at})
        pipe.expire(attempt.client_key, CLIENT_WINDOW_SECONDS)
        locked, codes, *_ = await pipe.execute()
    return attempt, CodeCount(codes, float(locked or 0))


async def code_refused(store: Store, attempt: Attempt) -> None:
    """Refused by the lock, not judged: not counted towards the next one."""
    await store.redis.hincrby(attempt.name_key, "codes", -1)


async def code_failed(store: Store, attempt: Attempt, counted: CodeCount) -> float:
    """A wrong code (already counted): at CODE_MAX_FAILURES the login's second step is
    locked for LOCK_SECONDS; returns its end, or 0."""
    if counted.codes < CODE_MAX_FAILURES:
        return 0.0
    until = attempt.at + LOCK_SECONDS
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(attempt.name_key, mapping={"codes": "0", "codes_locked_until": str(until)})
        pipe.expire(attempt.name_key, LOCK_SECONDS)
        _index(pipe, Lock(kind="code", name=attempt.name), until, attempt.at)
        await pipe.execute()
    return until


async def code_succeeded(store: Store, attempt: Attempt) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(attempt.name_key, "codes", -1)
        pipe.zrem(attempt.client_key, attempt.member)
        await pipe.execute()


def _index(pipe: Pipeline | ClusterPipeline, lock: Lock, until: float, now: float) -> None:
    """List a lock for the desk (and drop the ended ones, so the list stays short)."""
    pipe.zremrangebyscore(AccountKeys.locks, "-inf", now)
    pipe.zadd(AccountKeys.locks, {lock.member(): until})
    pipe.expire(AccountKeys.locks, LOCK_SECONDS + CLIENT_WINDOW_SECONDS)


async def in_force(store: Store) -> list[Lock]:
    """Every lock and throttle in force, the soonest to end first."""
    now = time.time()
    await store.redis.zremrangebyscore(AccountKeys.locks, "-inf", now)
    found = []
    for member, until in await store.redis.zrange(AccountKeys.locks, 0, -1, withscores=True):
        try:
            fields = json.loads(text(member))
            found.append(Lock(kind=fields["kind"], name=fields["name"], client=fields["client"], until=until))
        except (ValueError, KeyError, TypeError):
            continue
    return found


async def lift(store: Store, lock: Lock) -> bool:
    """Lift a lock in force (as listed by in_force); False if it is not (or no longer) one."""
    if await store.redis.zscore(AccountKeys.locks, lock.member()) is None:
        return False
    name_key = AccountKeys.name_attempts(_digest(lock.name))
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.zrem(AccountKeys.locks, lock.member())
        if lock.kind == "pair":
            pipe.delete(AccountKeys.attempts(_digest(lock.name, lock.client)))
        elif lock.kind == "name":
            pipe.hset(name_key, mapping={"tries": "0", "locked_until": "0"})
            pipe.expire(name_key, LOCK_SECONDS)
        elif lock.kind == "code":
            pipe.hset(name_key, mapping={"codes": "0", "codes_locked_until": "0"})
            pipe.expire(name_key, LOCK_SECONDS)
        else:
            pipe.delete(AccountKeys.client_failures(_digest(lock.client)))
        await pipe.execute()
    return True


async def lift_login(store: Store, login: str) -> None:
    """Lift every lock of a name: from each client, name-wide, and its second step."""
    for lock in await in_force(store):
        if lock.kind != "client" and lock.name == login:
            await lift(store, lock)
    await store.redis.delete(AccountKeys.name_attempts(_digest(login)))
