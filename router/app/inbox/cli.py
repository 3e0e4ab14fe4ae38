"""`contactrouter user ...`: the inbox's accounts from the operator's terminal.

The password is read from $CONTACTROUTER_PASSWORD (for scripts) or asked for twice
at a prompt; it never appears on the command line, where `ps` would show it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from router import audit
from router.app.inbox import accounts, lockout, second_factor
from router.app.inbox.audit import tenants_of
from router.config import Deployment
from router.store import Store

PASSWORD_ENV = "CONTACTROUTER_PASSWORD"


def register(sub: argparse._SubParsersAction) -> list[str]:
    user = sub.add_parser("user", help="inbox accounts: add, passwd, list, unlock, reset-second-factor, audit, remove")
    actions = user.add_subparsers(dest="user_action", required=True)
    add = actions.add_parser("add", help="create a login (password from $CONTACTROUTER_PASSWORD or a prompt)")
    add.add_argument("login")
    add.add_argument("--role", choices=accounts.ROLES, default="agent")
    add.add_argument("--agent", action="append", default=[], metavar="TENANT:AGENT", help="act as AGENT in TENANT")
    add.add_argument("--tenant", action="append", default=[], help="see TENANT without taking contacts (supervisors)")
    add.add_argument("--name", default="")
    passwd = actions.add_parser("passwd", help="set a new password (ends the login's sessions)")
    passwd.add_argument("login")
    actions.add_parser("list", help="every login with its role, memberships, second factor and locks")
    unlock = actions.add_parser("unlock", help="lift a login's locks after repeated wrong passwords or codes")
    unlock.add_argument("login")
    reset = actions.add_parser(
        "reset-second-factor", help="forget a login's second factor (a lost phone); ends its sessions"
    )
    reset.add_argument("login")
    trail = actions.add_parser("audit", help="the audit trail: logins, locks, changes, exports, newest last")
    trail.add_argument("--tenant", help="only what concerns this tenant")
    trail.add_argument("--action", choices=sorted(audit.ACTIONS))
    trail.add_argument("-n", type=int, default=50, help="how many entries (50)")
    remove = actions.add_parser("remove", help="delete a login and end its sessions")
    remove.add_argument("login")
    return ["user"]


def read_password(env: dict[str, str] | os._Environ = os.environ) -> str:
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise accounts.AccountError(f"no terminal to ask for the password: set {PASSWORD_ENV}")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise accounts.AccountError("the passwords differ")
    return first


async def command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    act = a.user_action
    if act == "add":
        memberships = accounts.parse_memberships(deployment, a.agent, a.tenant)
        user = await accounts.add(store, a.login, read_password(), a.role, memberships, name=a.name)
        await _audit(store, "user_added", user, f"{user.role}: {_memberships(user)}")
        print(f"added {user.login} ({user.role}): {_memberships(user)}")
    elif act == "passwd":
        if await accounts.get(store, a.login) is None:
            raise accounts.AccountError(f"no user {a.login!r}")
        await accounts.set_password(store, a.login, read_password())
        await _audit(store, "password_changed", await accounts.get(store, a.login))
        print(f"password of {a.login} changed; its sessions ended")
    elif act == "list":
        locks = await lockout.in_force(store)
        for user in await accounts.all_users(store):
            factor = "  2FA" if user.second_factor else ""
            print(f"{user.login}  {user.role}  {_memberships(user)}{factor}{_locks(user, locks)}")
    elif act == "unlock":
        await accounts.unlock(store, a.login)
        await _audit(store, "unlocked", await accounts.get(store, a.login), "every lock of the login", a.login)
        print(f"unlocked {a.login}")
    elif act == "reset-second-factor":
        await second_factor.reset(store, a.login)
        await _audit(store, "second_factor_reset", await accounts.get(store, a.login))
        print(f"second factor of {a.login} reset; its sessions ended (it enrols again at its next login)")
    elif act == "remove":
        removed = await accounts.get(store, a.login)
        await accounts.remove(store, a.login)
        await _audit(store, "user_removed", removed, target=a.login)
        print(f"removed {a.login}")
    elif act == "audit":
        entries, _more = await audit.read(store, tenant=a.tenant or "", action=a.action or "", count=a.n)
        for _id, entry in reversed(entries):
            where = ",".join(entry.tenants) or "-"
            print(
                f"{audit.when(entry)}  {entry.actor}  {audit.ACTIONS[entry.action]}  {entry.target or '-'}"
                f"  from {entry.client or '-'}  [{where}]{'  ' + entry.detail if entry.detail else ''}"
            )


async def _audit(store: Store, action: str, user: accounts.User | None, detail: str = "", target: str = "") -> None:
    await audit.record(
        store,
        action,
        actor=audit.cli_actor(),
        client="cli",
        tenants=tenants_of(user),
        target=target or (user.login if user else ""),
        detail=detail,
    )


def _locks(user: accounts.User, locks: list[lockout.Lock]) -> str:
    """What locks the login out, as `user list` shows it."""
    shown = []
    for lock in locks:
        if lock.name != user.login or lock.kind == "client":
            continue
        shown.append({"pair": f"from {lock.client}", "name": "name-wide", "code": "second step"}[lock.kind])
    return f"  LOCKED ({', '.join(shown)})" if shown else ""


def _memberships(user: accounts.User) -> str:
    if user.role == "admin" and not user.memberships:
        return "all tenants"
    return ", ".join(f"{t}:{a}" if a else t for t, a in sorted(user.memberships.items())) or "no tenants"
