"""The audit trail: logins, failed logins, locks lifted, password and second-factor
changes, exports and recordings opened, with who, when and from where; admins read it
per tenant on the desk and from the CLI, and nobody else can."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import pytest

from router import audit
from router.app.inbox import accounts, second_factor
from router.app.inbox import cli as user_cli
from tests.router.test_inbox_pages import (  # noqa: F401 - cheap_hashes: autouse fixture
    PASSWORD,
    SECRET,
    Inbox,
    cheap_hashes,
    log_in,
    logged_in,
    start_inbox,
)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    await accounts.add(w.store, "root", PASSWORD, "admin", {})
    await second_factor.activate(w.store, "root", SECRET)
    async with server:
        yield Inbox(w, server)


async def trail(inbox: Inbox, **query: str) -> list[audit.Entry]:
    entries, _more = await audit.read(inbox.world.store, **query)
    return [entry for _id, entry in entries]


async def test_logins_and_failed_logins_are_recorded_with_the_address_and_the_tenants(inbox: Inbox) -> None:
    async with inbox.client() as client:
        assert (await log_in(client, "amy", "wrong password")).status == 401
        await log_in(client, "nobody-at-all", "guess")
        assert (await log_in(client, "amy")).status == 303
    newest_first = await trail(inbox)
    assert [(e.action, e.actor, e.tenants) for e in newest_first] == [
        ("login", "amy", ("acme",)),
        ("login_failed", "nobody-at-all", ()),  # no such login: it concerns no tenant
        ("login_failed", "amy", ("acme",)),
    ]
    assert all(e.client == "127.0.0.1" and e.at > 0 for e in newest_first)
    assert [e.actor for e in await trail(inbox, tenant="globex")] == []  # gus's tenant saw nothing


async def test_an_admin_reads_the_trail_per_tenant_and_others_may_not(inbox: Inbox) -> None:
    async with inbox.client() as client:
        await log_in(client, "gus")
    client, _token = await logged_in(inbox, "root")
    async with client:
        acme = await (await client.get("/inbox/audit", params={"tenant": "acme"})).text()
        assert ">root<" in acme and ">gus<" not in acme  # an admin's login concerns every tenant
        globex = await (await client.get("/inbox/audit", params={"tenant": "globex"})).text()
        assert ">gus<" in globex and "logged in" in globex
    for login in ("sue", "amy"):
        other, _token = await logged_in(inbox, login)
        async with other:
            assert (await other.get("/inbox/audit")).status == 403


async def test_cli_changes_and_exports_are_recorded_as_the_operators(inbox: Inbox, monkeypatch) -> None:
    store, deployment = inbox.world.store, inbox.world.deployment
    monkeypatch.setenv("CONTACTROUTER_PASSWORD", "another good passphrase")
    await user_cli.command(store, deployment, argparse.Namespace(user_action="passwd", login="amy"))
    await user_cli.command(store, deployment, argparse.Namespace(user_action="reset-second-factor", login="sue"))
    [reset, passwd] = [e for e in await trail(inbox) if e.action != "login"]
    assert (passwd.action, passwd.target, passwd.client, passwd.tenants) == (
        "password_changed",
        "amy",
        "cli",
        ("acme",),
    )
    assert passwd.actor.startswith("cli")
    assert (reset.action, reset.target) == ("second_factor_reset", "sue")


async def test_a_report_exported_from_the_desk_is_recorded(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "sue")
    async with client:
        response = await client.get("/inbox/reports.csv", params={"tenant": "acme"})
        assert response.status == 200
    [export] = await trail(inbox, action="export")
    assert (export.actor, export.tenants) == ("sue", ("acme",)) and export.target.startswith("report ")


async def test_the_trail_pages_from_newest_to_oldest(inbox: Inbox) -> None:
    store = inbox.world.store
    for n in range(audit.PAGE + 5):
        await audit.record(store, "export", actor=f"user{n}", tenants=("acme",))
    first, more = await audit.read(store, tenant="acme")
    rest, end = await audit.read(store, tenant="acme", before=more)
    assert [e.actor for _i, e in first][:2] == [f"user{audit.PAGE + 4}", f"user{audit.PAGE + 3}"]
    assert len(first) == audit.PAGE and [e.actor for _i, e in rest] == [f"user{n}" for n in range(4, -1, -1)]
    assert end == ""
