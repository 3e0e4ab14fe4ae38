"""Login lock-outs over HTTP: per client address (through trusted proxies only), the
throttle of a client failing across names (429), and the desk's locks page, where admins
see and lift every lock and a supervisor only those of their tenants' staff."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, ClientSession

from router.app.inbox import accounts, lockout, second_factor
from router.settings import Settings
from tests.router.test_inbox_pages import (  # noqa: F401 - cheap_hashes: autouse fixture
    PASSWORD,
    SECRET,
    Inbox,
    cheap_hashes,
    csrf_of,
    log_in,
    start_inbox,
)

STRANGER = "198.51.100.9"
OTHER_STRANGER = "198.51.100.10"
OFFICE = "203.0.113.7"
LIMIT = 21  # LOGIN_CLIENT_FAILURES here: one address may lock four names (5 tries each)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    """Behind one trusted proxy (TRUSTED_PROXY_HOPS=1), so a test can log in from any address;
    with root (admin) and gail (supervisor of globex) besides start_inbox's logins."""
    w, server = await start_inbox(settings=Settings(trusted_proxy_hops=1, login_client_failures=LIMIT))
    await accounts.add(w.store, "root", PASSWORD, "admin", {})
    await accounts.add(w.store, "gail", PASSWORD, "supervisor", {"globex": ""})
    for login in ("root", "gail"):
        await second_factor.activate(w.store, login, SECRET)
    async with server:
        yield Inbox(w, server)


async def log_in_from(client: ClientSession, address: str, login: str, password: str = PASSWORD) -> ClientResponse:
    """The login form, as the proxy forwards it from `address` (appended to whatever the client sent)."""
    page = await client.get("/inbox/login")
    return await client.post(
        "/inbox/login",
        data={"login": login, "password": password, "csrf": csrf_of(await page.text())},
        headers={"X-Forwarded-For": f"10.9.9.9, {address}"},  # the first entry is the client's own claim
        allow_redirects=False,
    )


async def test_a_strangers_five_wrong_tries_do_not_stop_the_right_password_from_another_address(
    inbox: Inbox,
) -> None:
    async with inbox.client() as client:
        for _ in range(accounts.MAX_FAILURES):
            response = await log_in_from(client, STRANGER, "amy", "wrong password")
        assert response.status == 401 and "Too many attempts, try again later." in await response.text()
        response = await log_in_from(client, STRANGER, "amy")
        assert response.status == 401 and "cr_session" not in response.cookies
    async with inbox.client() as client:
        response = await log_in_from(client, OFFICE, "amy")
        assert response.status == 303 and response.cookies["cr_session"]


async def test_without_a_trusted_proxy_x_forwarded_for_is_ignored() -> None:
    """A client cannot dodge its lock by claiming other addresses: only the peer counts."""
    w, server = await start_inbox()
    async with server:
        inbox = Inbox(w, server)
        async with inbox.client() as client:
            for n in range(accounts.MAX_FAILURES):
                await log_in_from(client, f"192.0.2.{n}", "amy", "wrong password")
            response = await log_in_from(client, "192.0.2.99", "amy")
            assert response.status == 401 and "Too many attempts, try again later." in await response.text()
        [lock] = await lockout.in_force(w.store)
        assert (lock.kind, lock.name, lock.client) == ("pair", "amy", "127.0.0.1")


async def test_an_address_failing_across_names_is_throttled_with_retry_after(inbox: Inbox) -> None:
    async with inbox.client() as client:
        for n in range(LIMIT):
            response = await log_in_from(client, STRANGER, f"name{n}", "wrong password")
            assert response.status == 401
        response = await log_in_from(client, STRANGER, "amy")
        assert response.status == 429
        wait = int(response.headers["Retry-After"])
        assert 0 < wait <= lockout.CLIENT_WINDOW_SECONDS + 1
        assert re.search(
            r"Too many failed logins from your network\. Try again in \d+ minutes\.", await response.text()
        )
        assert (await log_in_from(client, OFFICE, "amy")).status == 303  # another address is not held up


async def locks_on_the_desk(client: ClientSession) -> list[tuple[str, str, str]]:
    page = await (await client.get("/inbox/locks")).text()
    return re.findall(r'<tr data-kind="(\w+)" data-name="([^"]*)" data-client="([^"]*)">', page)


async def test_an_admin_sees_locks_and_throttles_on_the_desk_and_lifts_them(inbox: Inbox) -> None:
    async with inbox.client() as stranger:
        for _ in range(accounts.MAX_FAILURES):
            await log_in_from(stranger, STRANGER, "amy", "wrong password")
        for n in range(LIMIT):
            await log_in_from(stranger, STRANGER, f"name{n}", "wrong password")
        assert (await log_in_from(stranger, STRANGER, "zoe")).status == 429
    async with inbox.client() as root:
        assert (await log_in(root, "root")).status == 303
        assert sorted(await locks_on_the_desk(root)) == [("client", "", STRANGER), ("pair", "amy", STRANGER)]
        token = csrf_of(await (await root.get("/inbox/locks")).text())
        forged = await root.post("/inbox/locks/lift", data={"kind": "client", "name": "", "client": STRANGER})
        assert forged.status == 403
        lifted = await root.post("/inbox/locks/lift", data={"csrf": token, "kind": "client", "client": STRANGER})
        assert lifted.status == 200 and "Lock lifted." in await lifted.text()
        assert await locks_on_the_desk(root) == [("pair", "amy", STRANGER)]
        again = await root.post("/inbox/locks/lift", data={"csrf": token, "kind": "client", "client": STRANGER})
        assert "That lock had already ended." in await again.text()
        await root.post("/inbox/locks/lift", data={"csrf": token, "kind": "pair", "name": "amy", "client": STRANGER})
        assert await locks_on_the_desk(root) == []
        assert "No login is locked and no address is throttled." in await (await root.get("/inbox/locks")).text()
    async with inbox.client() as amy:
        assert (await log_in_from(amy, STRANGER, "amy")).status == 303


async def test_a_supervisor_sees_and_lifts_only_the_locks_of_their_tenants_staff(inbox: Inbox) -> None:
    async with inbox.client() as stranger:
        for login in ("amy", "gus", "root", "nobody"):
            for _ in range(accounts.MAX_FAILURES):
                await log_in_from(stranger, STRANGER, login, "wrong password")
        for n in range(LIMIT):
            await log_in_from(stranger, OTHER_STRANGER, f"name{n}", "wrong password")
        assert (await log_in_from(stranger, OTHER_STRANGER, "zoe")).status == 429
    async with inbox.client() as sue, inbox.client() as gail:
        assert (await log_in(sue, "sue")).status == 303  # supervises acme
        assert (await log_in(gail, "gail")).status == 303  # supervises globex
        assert await locks_on_the_desk(sue) == [("pair", "amy", STRANGER)]  # no admin, no address, no stranger
        assert await locks_on_the_desk(gail) == [("pair", "gus", STRANGER)]
        token = csrf_of(await (await gail.get("/inbox/locks")).text())
        others = (("pair", "amy", STRANGER), ("client", "", OTHER_STRANGER), ("pair", "root", STRANGER))
        for kind, name, client in others:
            refused = await gail.post(
                "/inbox/locks/lift", data={"csrf": token, "kind": kind, "name": name, "client": client}
            )
            assert "That lock had already ended." in await refused.text()
        assert len(await lockout.in_force(inbox.world.store)) == 4  # amy, gus, root and the throttle
        await gail.post("/inbox/locks/lift", data={"csrf": token, "kind": "pair", "name": "gus", "client": STRANGER})
        assert await locks_on_the_desk(gail) == []


async def test_agents_may_not_see_the_locks(inbox: Inbox) -> None:
    async with inbox.client() as amy:
        await log_in(amy, "amy")
        assert (await amy.get("/inbox/locks")).status == 403
