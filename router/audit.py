"""The audit trail of what people do with accounts and personal data: every login and
failed login, lock and unlock, password, role and second-factor change, export,
recording opened and live call listened to, with who, when and from where. Admins read it per tenant on the desk
(/inbox/audit, router/app/inbox/audit.py) and with `contactrouter user audit`.

One stream under the accounts' hash tag (a login may serve several tenants): each entry
names the tenants it concerns, and readers filter by them. It is kept to MAX_ENTRIES
(trimmed approximately, oldest first). Nothing secret goes in: no password, code, token
or message text.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
from collections.abc import Iterable

import msgspec
from redis.exceptions import RedisError

from router import events
from router.keys import AccountKeys
from router.store import Store, text

log = logging.getLogger(__name__)

MAX_ENTRIES = 1_000_000
PAGE = 100
EVERY_TENANT = "*"  # an admin's action, or a login that serves every tenant

ACTIONS = {
    "login": "logged in",
    "login_failed": "failed to log in",
    "login_locked": "was locked out (too many wrong passwords)",
    "login_throttled": "was throttled (too many failures from one address)",
    "code_failed": "entered a wrong second-factor code",
    "logout": "logged out",
    "unlocked": "lifted a lock",
    "password_changed": "changed a password",
    "user_added": "added a login",
    "user_removed": "removed a login",
    "second_factor_on": "turned a second factor on",
    "second_factor_reset": "reset a second factor",
    "recovery_codes": "made new recovery codes",
    "export": "exported data",
    "erasure": "erased a customer's data",
    "recording_opened": "opened a recording or a customer's file",
    "call_monitored": "listened to, whispered into or joined a live call",
    "consent_revoked": "confirmed a customer's revocation of consent (opt-out recorded)",
    "revocation_dismissed": "dismissed a possible revocation of consent (no opt-out)",
    "article": "wrote, reviewed, published or archived a knowledge-base article",
}


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    at: int  # ms
    action: str
    actor: str  # the login who acted ("cli:<os user>" from the command line), or the name typed
    client: str = ""  # where from: the client's address, or "cli"
    tenants: tuple[str, ...] = ()  # whom it concerns; EVERY_TENANT for all
    target: str = ""  # the login, conversation or campaign acted on
    detail: str = ""


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


async def record(
    store: Store,
    action: str,
    *,
    actor: str,
    client: str = "",
    tenants: Iterable[str] = (),
    target: str = "",
    detail: str = "",
) -> None:
    """Add one entry. An audit write that fails is logged, never the reason an action fails
    (the action has happened; the log line keeps the fact)."""
    assert action in ACTIONS, action
    entry = Entry(
        at=events.now_ms(),
        action=action,
        actor=actor[:100],
        client=client[:100],
        tenants=tuple(tenants),
        target=target[:200],
        detail=detail[:500],
    )
    try:
        await store.redis.xadd(
            AccountKeys.audit, {"e": msgspec.msgpack.encode(entry)}, maxlen=MAX_ENTRIES, approximate=True
        )
    except RedisError as exc:
        log.error("audit entry not written (%s): %s by %s from %s on %s", exc, action, actor, client, target)


async def read(
    store: Store, *, tenant: str = "", action: str = "", before: str = "+", count: int = PAGE
) -> tuple[list[tuple[str, Entry]], str]:
    """Up to `count` entries, newest first, older than `before` (a stream id), of one tenant
    (those naming it or every tenant) and action when given; and the id to go on from ("" at the end)."""
    found: list[tuple[str, Entry]] = []
    cursor = before
    while len(found) < count:
        rows = await store.redis.xrevrange(AccountKeys.audit, max=cursor, min="-", count=count * 4)
        if cursor != "+" and rows and text(rows[0][0]) == cursor.lstrip("("):
            rows = rows[1:]
        if not rows:
            return found, ""
        for entry_id, fields in rows:
            entry = msgspec.msgpack.decode(fields[b"e"], type=Entry)
            if action and entry.action != action:
                continue
            if tenant and tenant not in entry.tenants and EVERY_TENANT not in entry.tenants:
                continue
            found.append((text(entry_id), entry))
            if len(found) == count:
                return found, text(entry_id)
        cursor = text(rows[-1][0])
    return found, cursor


def when(entry: Entry) -> str:
    return dt.datetime.fromtimestamp(entry.at / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
