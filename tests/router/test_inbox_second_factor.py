"""The inbox's second factor: TOTP enrolment confirmed by a code, codes accepted once,
recovery codes kept hashed and spent once, the policy, the two-step login over HTTP, the
gate that keeps a login without its required second factor on the enrolment page, and
`contactrouter user reset-second-factor`."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import AsyncIterator

import pyotp
import pytest
from aiohttp import ClientResponse, ClientSession

from router.app.inbox import accounts, lockout, second_factor
from router.app.inbox import cli as user_cli
from router.keys import AccountKeys
from tests.factories import world
from tests.router.test_inbox_pages import (  # noqa: F401 - cheap_hashes: autouse fixture
    DEPLOYMENT,
    PASSWORD,
    SECRET,
    Inbox,
    cheap_hashes,
    code_at,
    csrf_of,
    enter_code,
    log_in,
    start_inbox,
    this_step,
)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


REQUIRED_FOR_GLOBEX_AGENTS = DEPLOYMENT.replace(
    'id = "globex"\n', 'id = "globex"\nsecond_factor_for_agents = "required"\n', 1
)


def wrong_code(secret: str = SECRET) -> str:
    """Six digits that are none of the codes the server would accept now."""
    step = this_step()
    right = {code_at(s, secret) for s in range(step - 2, step + 3)}
    return next(code for code in ("000000", "111111", "222222", "333333", "444444", "555555") if code not in right)


async def password_then_code(client: ClientSession, login: str, code: str) -> ClientResponse:
    page = await client.get("/inbox/login")
    await client.post("/inbox/login", data={"login": login, "password": PASSWORD, "csrf": csrf_of(await page.text())})
    token = csrf_of(await (await client.get("/inbox/login/code")).text())
    return await client.post("/inbox/login/code", data={"csrf": token, "code": code}, allow_redirects=False)


async def amy_with_a_secret() -> tuple[object, str]:
    w = await world(DEPLOYMENT)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    return w, await second_factor.enrolment(w.store, "amy")


# --- the model ---


async def test_an_enrolment_is_on_only_once_a_code_of_its_secret_confirms_it() -> None:
    w, secret = await amy_with_a_secret()
    assert await second_factor.enrolment(w.store, "amy") == secret  # the same secret until confirmed
    assert not (await accounts.get(w.store, "amy")).second_factor
    assert await second_factor.confirm(w.store, "amy", wrong_code(secret)) is None
    assert not (await accounts.get(w.store, "amy")).second_factor
    codes = await second_factor.confirm(w.store, "amy", code_at(this_step(), secret))
    assert codes is not None and len(codes) == second_factor.RECOVERY_CODES == len(set(codes))
    assert (await accounts.get(w.store, "amy")).second_factor
    assert await w.store.redis.get(AccountKeys.enrolment("amy")) is None


async def test_a_code_is_accepted_once_and_never_after_a_later_one() -> None:
    w, secret = await amy_with_a_secret()
    await second_factor.activate(w.store, "amy", secret)
    step = this_step()
    assert await second_factor.verify(w.store, "amy", code_at(step, secret))
    assert not await second_factor.verify(w.store, "amy", code_at(step, secret))  # replayed in its step
    assert await second_factor.verify(w.store, "amy", code_at(step + 1, secret))  # the next (a clock ahead)
    assert not await second_factor.verify(w.store, "amy", code_at(step, secret))  # an earlier step's
    assert not await second_factor.verify(w.store, "amy", code_at(step + 3, secret))  # too far ahead


async def test_the_same_code_sent_twice_at_once_is_accepted_once() -> None:
    w, secret = await amy_with_a_secret()
    await second_factor.activate(w.store, "amy", secret)
    code = code_at(this_step(), secret)
    results = await asyncio.gather(*(second_factor.verify(w.store, "amy", code) for _ in range(10)))
    assert results.count(True) == 1


async def test_recovery_codes_are_kept_hashed_and_each_works_once() -> None:
    w, secret = await amy_with_a_secret()
    codes = await second_factor.activate(w.store, "amy", secret)
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code) for code in codes)
    stored = b"".join(await w.store.redis.smembers(AccountKeys.recovery_codes("amy")))
    assert not any(code.encode() in stored or code.replace("-", "").encode() in stored for code in codes)
    assert await second_factor.verify(w.store, "amy", f"  {codes[0].upper().replace('-', ' ')} ")  # as typed
    assert not await second_factor.verify(w.store, "amy", codes[0])
    assert await second_factor.recovery_codes_left(w.store, "amy") == second_factor.RECOVERY_CODES - 1
    new = await second_factor.new_recovery_codes(w.store, "amy")
    assert not await second_factor.verify(w.store, "amy", codes[1])  # the old ones stop working
    assert await second_factor.verify(w.store, "amy", new[1])


async def test_policy_requires_a_second_factor_of_supervisors_admins_and_agents_of_a_tenant_that_says_so() -> None:
    w = await world(REQUIRED_FOR_GLOBEX_AGENTS)
    amy = await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    gus = await accounts.add(w.store, "gus", PASSWORD, "agent", {"globex": "gus"})
    both = await accounts.add(w.store, "zoe", PASSWORD, "agent", {"acme": "zoe", "globex": "gus"})
    sue = await accounts.add(w.store, "sue", PASSWORD, "supervisor", {"acme": ""})
    root = await accounts.add(w.store, "root", PASSWORD, "admin", {})
    required = {u.login: second_factor.required(u, w.deployment) for u in (amy, gus, both, sue, root)}
    assert required == {"amy": False, "gus": True, "zoe": True, "sue": True, "root": True}


def test_a_tenant_refuses_an_unknown_second_factor_policy() -> None:
    from router.config import parse_deployment
    from router.errors import ConfigError

    with pytest.raises(ConfigError, match="second_factor_for_agents"):
        parse_deployment(DEPLOYMENT.replace('id = "globex"\n', 'id = "globex"\nsecond_factor_for_agents = "off"\n'))


async def test_user_reset_second_factor_forgets_it_and_ends_the_sessions(capsys) -> None:
    w, secret = await amy_with_a_secret()
    await second_factor.activate(w.store, "amy", secret)
    await w.store.redis.sadd(AccountKeys.user_sessions("amy"), "d")
    await w.store.redis.hset(AccountKeys.session("d"), "login", "amy")
    await user_cli.command(w.store, w.deployment, argparse.Namespace(user_action="list"))
    assert "amy  agent  acme:amy  2FA" in capsys.readouterr().out
    await user_cli.command(w.store, w.deployment, argparse.Namespace(user_action="reset-second-factor", login="amy"))
    assert "second factor of amy reset" in capsys.readouterr().out
    assert not (await accounts.get(w.store, "amy")).second_factor
    assert not await second_factor.verify(w.store, "amy", code_at(this_step(), secret))
    assert await w.store.redis.exists(AccountKeys.session("d"), AccountKeys.recovery_codes("amy")) == 0
    with pytest.raises(accounts.AccountError, match="no user"):
        await second_factor.reset(w.store, "nobody")


def test_the_cli_parses_reset_second_factor() -> None:
    from router.app import cli

    a = cli._parser().parse_args(["user", "reset-second-factor", "sue"])
    assert (a.user_action, a.login) == ("reset-second-factor", "sue")


# --- over HTTP ---


async def test_a_login_with_a_second_factor_gets_its_session_only_after_the_code(inbox: Inbox) -> None:
    async with inbox.client() as client:
        page = await client.get("/inbox/login")
        response = await client.post(
            "/inbox/login",
            data={"login": "sue", "password": PASSWORD, "csrf": csrf_of(await page.text())},
            allow_redirects=False,
        )
        assert response.status == 303 and response.headers["Location"] == "/inbox/login/code"
        assert "cr_session" not in response.cookies and response.cookies["cr_pending"]["httponly"]
        assert (await client.get("/inbox/floor", allow_redirects=False)).headers["Location"].startswith("/inbox/login")
        code_page = await client.get("/inbox/login/code")
        assert 'autocomplete="one-time-code"' in await code_page.text()
        wrong = await client.post(
            "/inbox/login/code",
            data={"csrf": csrf_of(await code_page.text()), "code": wrong_code()},
            allow_redirects=False,
        )
        assert wrong.status == 401 and "That code is not right." in await wrong.text()
        response = await enter_code(client)
        assert response.status == 303 and response.headers["Location"] == "/inbox/floor"
        assert response.cookies["cr_session"]["httponly"]
        assert (await client.get("/inbox/floor", allow_redirects=False)).status == 200
        # the pending login is spent: its cookie is cleared, and its record is gone
        assert await inbox.world.store.redis.keys(AccountKeys.pending_login("*")) == []


async def test_the_code_step_needs_its_own_csrf_token(inbox: Inbox) -> None:
    async with inbox.client() as client:
        page = await client.get("/inbox/login")
        await client.post(
            "/inbox/login", data={"login": "sue", "password": PASSWORD, "csrf": csrf_of(await page.text())}
        )
        response = await client.post("/inbox/login/code", data={"code": code_at(this_step())}, allow_redirects=False)
        assert response.status == 403


async def test_a_pending_login_allows_five_codes_then_asks_for_the_password_again(inbox: Inbox) -> None:
    async with inbox.client() as client:
        page = await client.get("/inbox/login")
        await client.post(
            "/inbox/login", data={"login": "sue", "password": PASSWORD, "csrf": csrf_of(await page.text())}
        )
        token = csrf_of(await (await client.get("/inbox/login/code")).text())
        for _ in range(second_factor.PENDING_TRIES):
            wrong = await client.post("/inbox/login/code", data={"csrf": token, "code": wrong_code()})
            assert wrong.status == 401 and "That code is not right." in await wrong.text()
        right = await client.post("/inbox/login/code", data={"csrf": token, "code": code_at(this_step())})
        assert right.status == 401 and "That login step has ended. Log in again." in await right.text()
        assert "cr_session" not in {c.key for c in client.cookie_jar}


async def test_wrong_codes_across_logins_lock_the_second_step_until_an_admin_lifts_it(inbox: Inbox) -> None:
    w = inbox.world
    async with inbox.client() as client:
        for _ in range(lockout.CODE_MAX_FAILURES // second_factor.PENDING_TRIES):
            page = await client.get("/inbox/login")
            await client.post(
                "/inbox/login", data={"login": "sue", "password": PASSWORD, "csrf": csrf_of(await page.text())}
            )
            token = csrf_of(await (await client.get("/inbox/login/code")).text())
            for _ in range(second_factor.PENDING_TRIES):
                last = await client.post("/inbox/login/code", data={"csrf": token, "code": wrong_code()})
        assert "Too many wrong codes for this login." in await last.text()
        response = await password_then_code(client, "sue", code_at(this_step()))  # both right
        assert response.status == 401 and "Too many wrong codes for this login." in await response.text()
    assert [(lock.kind, lock.name) for lock in await lockout.in_force(w.store)] == [("code", "sue")]
    await accounts.unlock(w.store, "sue")
    async with inbox.client() as client:
        assert (await log_in(client, "sue")).status == 303


async def test_a_recovery_code_logs_in_once_instead_of_a_code(inbox: Inbox) -> None:
    codes = await second_factor.new_recovery_codes(inbox.world.store, "sue")
    for expected in (303, 401):
        async with inbox.client() as client:
            assert (await password_then_code(client, "sue", codes[0])).status == expected


async def test_a_supervisor_without_a_second_factor_can_only_enrol_until_they_have_one(inbox: Inbox) -> None:
    w = inbox.world
    await accounts.add(w.store, "sam", PASSWORD, "supervisor", {"acme": ""})
    async with inbox.client() as client:
        response = await log_in(client, "sam")
        assert response.status == 303 and response.headers["Location"] == "/inbox/second-factor"
        for path in ("/inbox/floor", "/inbox", "/inbox/search", "/inbox/locks"):
            sent = await client.get(path, allow_redirects=False)
            assert sent.status == 303 and sent.headers["Location"] == "/inbox/second-factor", path
        page = await client.get("/inbox/second-factor")
        html = await page.text()
        token = csrf_of(html)
        assert "Your login needs a second factor." in html
        refused = await client.post("/inbox/t/acme/presence", data={"csrf": token, "presence": "available"})
        assert refused.status == 403
        assert (await client.get("/inbox/floor.json", allow_redirects=False)).status == 303

        uri = re.search(r'id="second-factor-uri">([^<]+)<', html).group(1).replace("&amp;", "&")
        totp = pyotp.parse_uri(uri)
        assert totp.issuer == second_factor.ISSUER and totp.name == "sam"
        assert totp.secret.replace(" ", "") == re.search(r'id="second-factor-secret">([^<]+)<', html).group(1).replace(
            " ", ""
        )
        assert 'id="second-factor-qr"' in html and "data:image/svg+xml;base64," in html
        wrong = await client.post("/inbox/second-factor", data={"csrf": token, "code": wrong_code()})
        assert wrong.status == 400 and "That code is not right." in await wrong.text()
        done = await client.post("/inbox/second-factor", data={"csrf": token, "code": totp.generate_otp(this_step())})
        codes = re.findall(r"<li><code>([a-z2-9-]+)</code></li>", await done.text())
        assert done.status == 200 and len(codes) == second_factor.RECOVERY_CODES
        assert (await client.get("/inbox/floor", allow_redirects=False)).status == 200
        again = await client.get("/inbox/second-factor")
        assert "Your second factor is on" in await again.text() and codes[0] not in await again.text()


async def test_an_agent_of_a_tenant_that_requires_it_enrols_and_others_may() -> None:
    w, server = await start_inbox(REQUIRED_FOR_GLOBEX_AGENTS)
    async with server:
        inbox = Inbox(w, server)
        async with inbox.client() as client:  # gus: globex requires it
            assert (await log_in(client, "gus")).headers["Location"] == "/inbox/second-factor"
            assert (await client.get("/inbox", allow_redirects=False)).headers["Location"] == "/inbox/second-factor"
        async with inbox.client() as client:  # amy: acme leaves it to her
            assert (await log_in(client, "amy")).headers["Location"] == "/inbox"
            assert (await client.get("/inbox", allow_redirects=False)).status == 200
            page = await (await client.get("/inbox/second-factor")).text()
            assert "Your login needs a second factor." not in page and 'id="enrol-form"' in page


async def test_new_recovery_codes_need_a_current_code(inbox: Inbox) -> None:
    async with inbox.client() as client:
        await log_in(client, "sue")
        token = csrf_of(await (await client.get("/inbox/second-factor")).text())
        wrong = await client.post("/inbox/second-factor/recovery-codes", data={"csrf": token, "code": wrong_code()})
        assert wrong.status == 400
        made = await client.post(
            "/inbox/second-factor/recovery-codes", data={"csrf": token, "code": code_at(this_step() + 1)}
        )
        assert made.status == 200 and len(re.findall(r"<li><code>", await made.text())) == 10


async def test_after_the_code_a_login_goes_back_to_the_page_its_session_ended_on(inbox: Inbox) -> None:
    async with inbox.client() as client:
        page = await client.get("/inbox/login", params={"next": "/inbox/search"})
        form = {"login": "sue", "password": PASSWORD, "csrf": csrf_of(await page.text()), "next": "/inbox/search"}
        response = await client.post("/inbox/login", data=form, allow_redirects=False)
        assert response.headers["Location"] == "/inbox/login/code?next=/inbox/search"
        code_page = await (await client.get(response.headers["Location"])).text()
        assert '<input type="hidden" name="next" value="/inbox/search">' in code_page
        step = this_step()
        for code in (code_at(step), code_at(step + 1)):
            data = {"csrf": csrf_of(code_page), "code": code, "next": "/inbox/search"}
            response = await client.post("/inbox/login/code", data=data, allow_redirects=False)
            if response.status != 401:
                break
        assert response.headers["Location"] == "/inbox/search"
