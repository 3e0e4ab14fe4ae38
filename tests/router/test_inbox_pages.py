"""The inbox pages over HTTP: login and lock-out, sessions, CSRF refusal, tenant
isolation (404), and each agent action through its form."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import argon2
import pyotp
import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer

from channels.sandbox import outbox
from router import conversations, events
from router.app import web
from router.app.inbox import accounts, second_factor
from router.keys import AccountKeys
from router.settings import Settings
from tests.factories import World, world

DEPLOYMENT = """
[[tenants]]
id = "acme"
name = "Acme Energy"
brand_color = "#c2410c"
entry = { default = "support" }
dispositions = ["resolved", "promise_to_pay", "follow_up"]
wrapup_seconds = 60

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
name = "Amy Adams"
skills = { support = 1 }

[[tenants.agents]]
id = "zoe"
name = "Zoe Zhang"
skills = { support = 1, billing = 1 }

[[tenants]]
id = "globex"
entry = { default = "sales" }

[[tenants.queues]]
id = "sales"

[[tenants.agents]]
id = "gus"
"""
PASSWORD = "correct horse battery"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # the test supervisors' second factor (policy requires one)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same Argon2id code path at a test-friendly cost."""
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(accounts, "HASHER", cheap)
    monkeypatch.setattr(accounts, "_DECOY", cheap.hash("decoy password nobody has"))  # unknown names alike


@dataclass
class Inbox:
    world: World
    server: TestServer

    def client(self) -> ClientSession:
        """A browser-like client with its own cookies (the server outlives it)."""
        return ClientSession(base_url=str(self.server.make_url("/")), cookie_jar=CookieJar(unsafe=True))


async def start_inbox(text: str = DEPLOYMENT, settings: Settings | None = None) -> tuple[World, TestServer]:
    """A world with agent accounts amy, zoe (acme), gus (globex) and supervisor sue (acme),
    whose second factor is SECRET."""
    w = await world(text)
    for login, tenant in (("amy", "acme"), ("zoe", "acme"), ("gus", "globex")):
        await accounts.add(w.store, login, PASSWORD, "agent", {tenant: login})
    await accounts.add(w.store, "sue", PASSWORD, "supervisor", {"acme": ""})
    await second_factor.activate(w.store, "sue", SECRET)
    server = TestServer(web.application(w.store, w.deployment, settings or Settings()))
    return w, server


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def log_in(client: ClientSession | TestClient, login: str, password: str = PASSWORD) -> ClientResponse:
    """The login form (and, for a login with a second factor, a code of SECRET): the last answer."""
    page = await client.get("/inbox/login")
    response = await client.post(
        "/inbox/login",
        data={"login": login, "password": password, "csrf": csrf_of(await page.text())},
        allow_redirects=False,
    )
    if response.status == 303 and response.headers["Location"] == "/inbox/login/code":
        return await enter_code(client)
    return response


def code_at(step: int, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def this_step() -> int:
    """The TOTP time step now, by the clock the server reads (time.time, which a test may move)."""
    return int(time.time()) // 30


async def enter_code(client: ClientSession | TestClient, secret: str = SECRET) -> ClientResponse:
    """The second step with a right code: this step's, or the next one's if an earlier login
    of the same user used this one's (a code is accepted once)."""
    token = csrf_of(await (await client.get("/inbox/login/code")).text())
    step = this_step()
    for code in (code_at(step, secret), code_at(step + 1, secret)):
        response = await client.post("/inbox/login/code", data={"csrf": token, "code": code}, allow_redirects=False)
        if response.status != 401:
            break
    return response


async def logged_in(inbox: Inbox, login: str) -> tuple[ClientSession, str]:
    """A client logged in as login, and the session's CSRF token."""
    client = inbox.client()
    response = await log_in(client, login)
    assert response.status == 303, await response.text()
    page = await client.get("/inbox")
    return client, csrf_of(await page.text())


async def test_the_inbox_asks_for_a_login_first(inbox: Inbox) -> None:
    async with inbox.client() as client:
        response = await client.get("/inbox", allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/inbox/login"
        assert (await client.get("/inbox/state.json", allow_redirects=False)).status == 401  # a script's: no redirect
        assert (await client.post("/inbox/presence", data={"presence": "available"})).status == 401


async def test_a_login_sets_a_protected_session_cookie_and_logout_ends_it(inbox: Inbox) -> None:
    async with inbox.client() as client:
        response = await log_in(client, "amy")
        assert response.status == 303 and response.headers["Location"] == "/inbox"
        cookie = response.cookies["cr_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/inbox"
        assert not cookie["secure"]  # plain http here; see the https test below
        page = await client.get("/inbox")
        assert page.status == 200 and "Amy Adams" not in await page.text()  # the login's name, not the agent's
        assert "amy (agent)" in await page.text()
        assert await inbox.world.store.redis.keys(AccountKeys.session("*")) != []
        token = csrf_of(await page.text())
        out = await client.post("/inbox/logout", data={"csrf": token}, allow_redirects=False)
        assert out.status == 303
        assert await inbox.world.store.redis.keys(AccountKeys.session("*")) == []
        assert (await client.get("/inbox", allow_redirects=False)).status == 302


async def test_the_session_cookie_is_secure_behind_an_https_public_url() -> None:
    _w, server = await start_inbox(settings=Settings(public_url="https://inbox.example"))
    async with server, TestClient(server) as client:
        page = await client.get("/inbox/login")
        login_cookie = page.cookies["cr_login_csrf"]
        assert login_cookie["secure"]  # so the jar of this plain-http client does not send it back
        token = csrf_of(await page.text())
        response = await client.post(
            "/inbox/login",
            data={"login": "amy", "password": PASSWORD, "csrf": token},
            headers={"Cookie": f"cr_login_csrf={login_cookie.value}"},
            allow_redirects=False,
        )
        assert response.status == 303 and response.cookies["cr_session"]["secure"]


async def test_a_wrong_password_is_refused_and_the_fifth_locks_the_login(inbox: Inbox) -> None:
    async with inbox.client() as client:
        for _ in range(accounts.MAX_FAILURES - 1):
            response = await log_in(client, "amy", "wrong password")
            assert response.status == 401 and "Wrong login or password." in await response.text()
        response = await log_in(client, "amy", "wrong password")
        assert response.status == 401 and "Too many attempts, try again later." in await response.text()
        response = await log_in(client, "amy")
        assert response.status == 401 and "cr_session" not in response.cookies


def _message_of(page: str) -> str:
    return page.split('<p class="error" role="alert">', 1)[1].split("<", 1)[0]


async def test_the_login_form_answers_alike_for_an_unknown_login_and_a_known_one(inbox: Inbox) -> None:
    """Someone trying names learns nothing from the lock-out: every name gets the same
    answers, attempt after attempt, whether or not a login of that name exists."""
    async with inbox.client() as client:
        for _ in range(accounts.MAX_FAILURES + 1):
            known = await log_in(client, "amy", "wrong password")
            unknown = await log_in(client, "nobody-here", "wrong password")
            assert known.status == unknown.status == 401
            assert _message_of(await known.text()) == _message_of(await unknown.text())
        assert "Too many attempts, try again later." in await unknown.text()


async def test_a_login_post_without_its_csrf_token_is_refused(inbox: Inbox) -> None:
    async with inbox.client() as client:
        response = await client.post("/inbox/login", data={"login": "amy", "password": PASSWORD})
        assert response.status == 403


async def test_posts_without_the_session_csrf_token_are_refused_and_change_nothing(inbox: Inbox) -> None:
    client, token = await logged_in(inbox, "amy")
    async with client:
        for data in ({"presence": "available"}, {"presence": "available", "csrf": "forged"}):
            response = await client.post("/inbox/presence", data=data, allow_redirects=False)
            assert response.status == 403
        assert (await inbox.world.agent("amy")).get("presence", "offline") == "offline"
        response = await client.post("/inbox/logout", allow_redirects=False)
        assert response.status == 403
        # the same form with the token works, and the header form of the token too
        ok = await client.post("/inbox/presence", data={"presence": "available", "csrf": token}, allow_redirects=False)
        assert ok.status == 303
        assert (await inbox.world.agent("amy"))["presence"] == "available"
        ok = await client.post(
            "/inbox/presence", data={"presence": "offline"}, headers={"X-CSRF-Token": token}, allow_redirects=False
        )
        assert ok.status == 303


async def test_a_cross_origin_post_is_refused_even_with_the_token(inbox: Inbox) -> None:
    client, token = await logged_in(inbox, "amy")
    async with client:
        response = await client.post(
            "/inbox/presence",
            data={"presence": "available", "csrf": token},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        )
        assert response.status == 403


async def test_pages_carry_a_strict_content_security_policy(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "amy")
    async with client:
        response = await client.get("/inbox")
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_an_agent_goes_available_accepts_an_offer_replies_and_closes(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        await client.post("/inbox/presence", data={"presence": "available", "csrf": token})
        conversation = await w.arrive(address="+15551230000", body="My meter is broken")
        page = await (await client.get("/inbox")).text()
        assert "My meter is broken" in page and "+1 555-123-0000" in page  # the number as people write it
        [offer] = await w.offers("amy")
        response = await client.post(
            f"/inbox/t/acme/offers/{offer['reservation']}/accept", data={"csrf": token}, allow_redirects=False
        )
        assert response.headers["Location"] == f"/inbox/t/acme/c/{conversation}?done=accepted"
        page = await (await client.get(response.headers["Location"])).text()
        assert "Offer accepted." in page and "My meter is broken" in page
        key = re.search(r'name="key" value="([^"]+)"', page).group(1)
        reply = {"csrf": token, "body": "Sending an engineer", "key": key, "to": "sms|+15551230000"}
        for _ in range(2):  # a double submit sends once
            response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=reply, allow_redirects=False)
            assert response.status == 303
        assert [m.body for m in await w.outgoing()] == ["Sending an engineer"]
        await client.post(f"/inbox/t/acme/c/{conversation}/note", data={"csrf": token, "text": "VIP customer"})
        response = await client.post(
            f"/inbox/t/acme/c/{conversation}/close",
            data={
                "csrf": token,
                "disposition": "promise_to_pay",
                "promise_amount": "120.50",
                "promise_date": "2099-01-31",
            },
        )
        assert response.status == 200 and "End wrap-up" in await response.text()
        record = await w.conversation(conversation)
        assert (record["state"], record["disposition"]) == ("closed", "promise_to_pay")
        kinds = [(e.kind, e.body) for e in await conversations.history(w.store, "acme", conversation)]
        assert kinds == [("in", "My meter is broken"), ("out", "Sending an engineer"), ("note", "VIP customer")]
        await client.post(f"/inbox/t/acme/c/{conversation}/wrapup", data={"csrf": token})
        assert conversation not in await w.store.redis.smembers(w.keys.agent_work("amy"))


async def test_a_reply_may_switch_to_another_address_of_the_customer(inbox: Inbox) -> None:
    from router import customers

    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy", address="+15551230000")
        customer = (await w.conversation(conversation))["customer"]
        await customers.link(w.store, "acme", customer, "email:jane@example.com")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert 'value="email|jane@example.com"' in page
        data = {"csrf": token, "body": "Details by mail", "to": "email|jane@example.com", "subject": "Your meter"}
        await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=data)
        [message] = await w.outgoing()
        assert (message.channel, message.to, message.subject) == ("email", "jane@example.com", "Your meter")
        # an address that is not the customer's is refused, and nothing is sent
        data["to"] = "email|stranger@example.com"
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=data)
        assert response.status == 409 and "not an address of this conversation" in await response.text()
        assert len(await w.outgoing()) == 1


async def test_someone_on_cc_who_replied_is_shown_as_not_the_customer_and_copied_only_by_choice(
    inbox: Inbox,
) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to(
            "amy",
            channel="email",
            address="jane@example.com",
            name="Jane Doe",
            provider_id="<m1@example.com>",
            metadata={"cc": "bob@corp.example"},
        )
        await w.arrive(
            channel="email",
            address="bob@corp.example",
            name="Bob Lee",
            provider_id="<m2@corp.example>",
            thread=("<m1@example.com>",),
            body="Send the balance to me",
        )
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        # his message says he is not the customer, and so does his choice in "Send to"
        assert "Bob Lee &lt;bob@corp.example&gt; (not the customer)" in page
        assert "Jane Doe &lt;jane@example.com&gt; (not the customer)" not in page
        options = re.findall(r'<option value="([^"]*)">([^<]*)</option>', page[page.index('id="reply-to"') :])
        assert options[:2] == [
            ("email|jane@example.com", "Email jane@example.com"),  # the default
            ("email|bob@corp.example", "Email bob@corp.example (not the customer)"),
        ]
        assert '<input type="checkbox" name="cc" value="bob@corp.example" id="reply-cc">' in page  # not ticked
        live = await (await client.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json()
        assert live["entries"][-1]["address"] == "Bob Lee <bob@corp.example> (not the customer)"

        data = {"csrf": token, "key": "k1", "body": "Your balance is 1,204.", "to": "email|jane@example.com"}
        await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=data)
        data = {**data, "key": "k2", "body": "Copying Bob, as Jane asked.", "cc": "bob@corp.example"}
        await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=data)
        sent = await w.outgoing()
        assert [(m.to, m.cc) for m in sent] == [
            ("jane@example.com", ()),
            ("jane@example.com", ("bob@corp.example",)),
        ]
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "jane@example.com (Cc: bob@corp.example)" in page


async def test_an_agent_rejects_an_offer(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        await w.available("amy")
        await w.arrive()
        [offer] = await w.offers("amy")
        response = await client.post(
            f"/inbox/t/acme/offers/{offer['reservation']}/reject", data={"csrf": token}, allow_redirects=False
        )
        assert response.headers["Location"] == "/inbox?done=rejected"
        assert await w.offers("amy") == []
        again = await client.post(
            f"/inbox/t/acme/offers/{offer['reservation']}/accept", data={"csrf": token}, allow_redirects=False
        )
        assert again.headers["Location"] == "/inbox?done=offer_gone"


async def test_a_transfer_to_a_colleague_offers_it_to_them_with_the_note(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy")
        await w.available("zoe")
        data = {"csrf": token, "target": "agent:zoe", "note": "wants a refund"}
        response = await client.post(f"/inbox/t/acme/c/{conversation}/transfer", data=data, allow_redirects=False)
        assert response.headers["Location"] == "/inbox?done=transferred"
        assert await w.offered("zoe") == [conversation]
        history = await conversations.history(w.store, "acme", conversation)
        assert history[-1].body == "Transfer note: wants a refund"


async def test_a_transfer_to_a_queue_and_a_bad_target_are_handled(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy")
        bad = await client.post(f"/inbox/t/acme/c/{conversation}/transfer", data={"csrf": token, "target": "x"})
        assert bad.status == 409 and "choose a colleague or a queue" in await bad.text()
        await client.post(f"/inbox/t/acme/c/{conversation}/transfer", data={"csrf": token, "target": "queue:billing"})
        assert (await w.conversation(conversation))["queue"] == "billing"


async def test_close_takes_only_the_tenants_dispositions(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert 'value="promise_to_pay"' in page
        response = await client.post(f"/inbox/t/acme/c/{conversation}/close", data={"csrf": token, "disposition": "x"})
        assert response.status == 409 and "disposition must be one of" in await response.text()
        assert (await w.conversation(conversation))["state"] == "assigned"


async def test_an_agent_of_one_tenant_gets_404_for_another_tenants_conversation(inbox: Inbox) -> None:
    w = inbox.world
    await agents_available(w, "globex", "gus")
    theirs = await w.deliver(_contact("globex"))
    client, token = await logged_in(inbox, "amy")
    async with client:
        assert (await client.get(f"/inbox/t/globex/c/{theirs}")).status == 404
        assert (await client.get(f"/inbox/t/globex/c/{theirs}/messages.json")).status == 404
        assert (await client.get(f"/inbox/t/acme/c/{theirs}")).status == 404  # wrong tenant in the URL
        response = await client.post(f"/inbox/t/globex/c/{theirs}/reply", data={"csrf": token, "body": "hi"})
        assert response.status == 404
        [offer] = await agents_offers(w, "globex", "gus")
        response = await client.post(f"/inbox/t/globex/offers/{offer['reservation']}/accept", data={"csrf": token})
        assert response.status == 404
        assert (await client.get("/inbox/t/acme/c/NO-SUCH-CONVERSATION")).status == 404
    assert await w.outgoing() == []


async def test_an_agent_cannot_act_on_a_colleagues_conversation(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("zoe")
    client, token = await logged_in(inbox, "amy")
    async with client:
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data={"csrf": token, "body": "hi"})
        assert response.status == 409 and "not assigned to amy" in await response.text()
    assert await w.outgoing() == []


async def test_a_message_with_html_and_script_is_shown_as_text(inbox: Inbox) -> None:
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client:
        await w.available("amy")
        body = '<script>alert("x")</script><img src=x onerror=alert(1)><b>bold</b>'
        conversation = await w.arrive(body=body)
        await w.accept_offer("amy")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
        inbox_page = await (await client.get("/inbox")).text()
        assert "<script>alert" not in inbox_page


async def test_an_email_html_body_is_sanitised_and_its_attachments_served_behind_the_login(tmp_path) -> None:
    from router.attachments import AttachmentStore

    files = AttachmentStore(tmp_path)
    html = files.put_sync(b'<p onclick="steal()">Dear team<script>alert(1)</script><img src="http://track/x.gif"></p>')
    pdf = files.put_sync(b"%PDF-1.4 a fax")
    w, server = await start_inbox(settings=Settings(attachment_dir=str(tmp_path)))
    async with server:
        inbox = Inbox(w, server)
        await w.available("amy")
        attachment = events.Attachment(url=pdf, content_type="application/pdf", filename="invoice.pdf", size=14)
        conversation = await w.arrive(
            channel="email",
            address="jane@example.com",
            body="Dear team",
            metadata={"html": html},
            attachments=(attachment,),
            subject="Invoice",
        )
        await w.accept_offer("amy")
        client, _token = await logged_in(inbox, "amy")
        async with client:
            page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
            assert '<div class="email-html"><p>Dear team' in page
            assert "steal()" not in page and "alert(1)" not in page and "http://track" not in page
            link = f"/inbox/t/acme/c/{conversation}/files/{pdf.removeprefix('store:')}"
            assert link in page
            response = await client.get(link)
            assert response.status == 200 and await response.read() == b"%PDF-1.4 a fax"
            assert response.headers["Content-Type"] == "application/pdf"
            assert "sandbox" in response.headers["Content-Security-Policy"]
            # a file the conversation does not reference is not served, whatever its digest
            other = files.put_sync(b"someone else's file").removeprefix("store:")
            assert (await client.get(f"/inbox/t/acme/c/{conversation}/files/{other}")).status == 404
        async with inbox.client() as anonymous:
            assert (await anonymous.get(link, allow_redirects=False)).status == 302


async def test_the_conversation_page_shows_the_customers_earlier_conversations(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        first = await w.assigned_to("amy", body="first problem")
        await client.post(f"/inbox/t/acme/c/{first}/close", data={"csrf": token, "disposition": "resolved"})
        await client.post(f"/inbox/t/acme/c/{first}/wrapup", data={"csrf": token})
        second = await w.arrive(body="second problem")
        assert second != first
        await w.accept_offer("amy")
        page = await (await client.get(f"/inbox/t/acme/c/{second}")).text()
        assert "first problem" in page and "second problem" in page and "Earlier conversation" in page


async def test_the_list_marks_unread_conversations_until_opened(inbox: Inbox) -> None:
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy", body="hello")
        [row] = (await (await client.get("/inbox/state.json")).json())["conversations"]
        assert row["unread"] and row["conversation"] == conversation and row["channel"] == "sms"
        await client.get(f"/inbox/t/acme/c/{conversation}")
        [row] = (await (await client.get("/inbox/state.json")).json())["conversations"]
        assert not row["unread"]
        await w.arrive(body="are you there?")
        [row] = (await (await client.get("/inbox/state.json")).json())["conversations"]
        assert row["unread"] and row["preview"] == "are you there?"


async def test_canned_replies_fill_in_the_customers_name_and_never_an_address(
    inbox: Inbox, tmp_path, monkeypatch
) -> None:
    from router.app.inbox import canned

    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "greeting.txt").write_text(
        "Hello {{ customer or 'there' }} ({{ customer_first_name }}), this is {{ agent_name }} from {{ tenant_name }}."
    )
    monkeypatch.setattr(canned, "replies_folder", lambda: tmp_path)
    w = inbox.world
    client, _token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy", address="+15551230000")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Hello there (), this is Amy Adams from Acme Energy." in page  # no name given: never the number
        conversation = await w.assigned_to("amy", channel="email", address="ana@example.com", name="Ana Lima")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Hello Ana Lima (Ana), this is Amy Adams from Acme Energy." in page


async def test_a_supervisor_sees_the_floor_and_an_agent_does_not(inbox: Inbox) -> None:
    w = inbox.world
    await w.arrive()  # waits: nobody is available
    client, _token = await logged_in(inbox, "sue")
    async with client:
        data = await (await client.get("/inbox/floor.json")).json()
        [acme] = data["tenants"]  # sue watches acme only
        support = next(q for q in acme["queues"] if q["queue"] == "support")
        assert support["waiting"] == 1
        assert {a["agent"] for a in acme["agents"]} == {"amy", "zoe"}
        assert (await client.get("/inbox/floor")).status == 200
    client, _token = await logged_in(inbox, "amy")
    async with client:
        assert (await client.get("/inbox/floor")).status == 403


async def test_a_supervisor_may_read_but_not_reply(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", body="help")
    client, token = await logged_in(inbox, "sue")
    async with client:
        page = await client.get(f"/inbox/t/acme/c/{conversation}")
        assert page.status == 200 and "help" in await page.text()
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data={"csrf": token, "body": "x"})
        assert response.status == 404  # sue is no agent in acme


def _contact(tenant: str) -> events.InboundContact:
    from tests.factories import contact

    return contact(tenant, body="globex secret")


async def agents_available(w: World, tenant: str, agent: str) -> None:
    from router import agents

    await agents.set_presence(w.store, w.deployment.tenant(tenant), agent, "available")


async def agents_offers(w: World, tenant: str, agent: str) -> list[dict[str, str]]:
    from router import agents

    return await agents.offers(w.store, w.deployment.tenant(tenant), agent)


async def sandbox_outbox(w: World) -> list[events.OutboundMessage]:
    return [message for _id, _provider, message in await outbox(w.store, "acme")]


async def test_a_supervisor_reassigns_a_conversation_to_a_queue_with_a_note(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", body="billing question")
    await w.available("zoe")
    client, token = await logged_in(inbox, "sue")
    async with client:
        floor = await (await client.get("/inbox/floor.json")).json()
        [row] = floor["tenants"][0]["in_progress"]
        assert (row["conversation"], row["agent"], row["state"]) == (conversation, "Amy Adams", "assigned")
        data = {"csrf": token, "target": "queue:billing", "note": "needs billing"}
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reassign", data=data, allow_redirects=False)
        assert response.headers["Location"] == f"/inbox/t/acme/c/{conversation}?done=reassigned"
    assert await w.offered("zoe") == [conversation]  # the billing agent is offered it at once
    assert conversation not in {c.decode() for c in await w.store.redis.smembers(w.keys.agent_work("amy"))}
    history = await conversations.history(w.store, "acme", conversation)
    assert (history[-1].agent, history[-1].body) == ("sue", "Supervisor note: needs billing")


async def test_take_over_needs_an_agent_of_ones_own_and_agents_cannot_reassign(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy")
    client, token = await logged_in(inbox, "sue")
    async with client:
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reassign", data={"csrf": token, "target": "me"})
        assert response.status == 409 and "take over needs an agent" in await response.text()
    client, token = await logged_in(inbox, "zoe")
    async with client:
        data = {"csrf": token, "target": "agent:zoe"}
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reassign", data=data)
        assert response.status == 403
    assert (await w.conversation(conversation))["agent"] == "amy"


async def test_a_supervisor_who_is_also_an_agent_takes_a_conversation_over(inbox: Inbox) -> None:
    w = inbox.world
    await accounts.add(w.store, "lead", PASSWORD, "supervisor", {"acme": "zoe"})
    await second_factor.activate(w.store, "lead", SECRET)
    conversation = await w.assigned_to("amy")
    await w.available("zoe")
    client, token = await logged_in(inbox, "lead")
    async with client:
        await client.post(f"/inbox/t/acme/c/{conversation}/reassign", data={"csrf": token, "target": "me"})
    assert await w.offered("zoe") == [conversation]


async def test_an_admin_sees_every_tenant_on_the_floor(inbox: Inbox) -> None:
    await accounts.add(inbox.world.store, "root", PASSWORD, "admin", {})
    await second_factor.activate(inbox.world.store, "root", SECRET)
    client, _token = await logged_in(inbox, "root")
    async with client:
        floor = await (await client.get("/inbox/floor.json")).json()
        assert [t["tenant"] for t in floor["tenants"]] == ["acme", "globex"]


async def test_a_callback_shows_its_outcome_and_call_now_dials_again_once_per_form(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        await w.available("amy")
        conversation = await w.arrive(channel="voice", kind="callback", address="+15551230000", body="")
        await w.accept_offer("amy")  # accepting dials: the agent's phone (or softphone) first, then the customer
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Callback · outcome: <strong>dialling</strong>" in page and "Call now" in page
        key = re.search(r'action="[^"]+/call" class="inline">\s*<input[^>]+>\s*<input type="hidden" name="key" '
                        r'value="([^"]+)"', page)  # fmt: skip
        assert key, "the Call now form carries its key"
        for _ in range(2):  # the same form sent twice (a double click): one more dial
            response = await client.post(f"/inbox/t/acme/c/{conversation}/call", data={"csrf": token, "key": key[1]})
            assert "Calling back: your phone or softphone rings first." in await response.text()
        calls = [m for m in await w.outgoing() if m.channel == "voice"]
        assert [(m.to, m.metadata["action"]) for m in calls] == [("+15551230000", "callback")] * 2
        assert len({m.id for m in calls}) == 2
        await client.post(f"/inbox/t/acme/c/{conversation}/call", data={"csrf": token, "key": events.new_id()})
    assert len([m for m in await w.outgoing() if m.channel == "voice"]) == 3


async def test_a_voicemail_links_its_recording(inbox: Inbox) -> None:
    w = inbox.world
    recording = events.Attachment(
        url="https://api.twilio.com/recordings/RE1.mp3", content_type="audio/mpeg", filename="voicemail.mp3"
    )
    client, _token = await logged_in(inbox, "amy")
    async with client:
        await w.available("amy")
        conversation = await w.arrive(
            channel="voice", kind="voicemail", body="please call me back", attachments=(recording,)
        )
        await w.accept_offer("amy")
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        # behind the login (router.app.inbox.media fetches it with the tenant's credentials)
        assert re.search(rf'Recording:\s*<a href="/inbox/t/acme/c/{conversation}/media/0"', page)
        assert "api.twilio.com" not in page
        assert "please call me back" in page and "voicemail" in page


async def test_away_takes_a_reason_and_hands_back_pending_offers(inbox: Inbox) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        await client.post("/inbox/presence", data={"presence": "available", "csrf": token})
        await w.arrive()
        assert len(await w.offers("amy")) == 1
        await client.post("/inbox/presence", data={"presence": "away", "reason": "lunch", "csrf": token})
        status = await w.agent("amy")
        assert (status["presence"], status["reason"]) == ("away", "lunch")
        assert await w.offers("amy") == []
        page = await (await client.get("/inbox")).text()
        assert "away (lunch)" in page
        bad = await client.post("/inbox/presence", data={"presence": "busy", "csrf": token})
        assert bad.status == 400


async def test_a_password_change_ends_every_session_of_the_login(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "amy")
    async with client:
        assert (await client.get("/inbox", allow_redirects=False)).status == 200
        await accounts.set_password(inbox.world.store, "amy", "a brand new passphrase")
        assert (await client.get("/inbox", allow_redirects=False)).status == 302


async def test_a_removed_user_is_logged_out(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "amy")
    async with client:
        await accounts.remove(inbox.world.store, "amy")
        assert (await client.get("/inbox", allow_redirects=False)).status == 302


async def test_a_session_ends_after_its_maximum_age_however_busy(inbox: Inbox) -> None:
    from router.app.inbox import sessions

    client, _token = await logged_in(inbox, "amy")
    async with client:
        [key] = await inbox.world.store.redis.keys(AccountKeys.session("*"))
        old = int(time.time()) - sessions.MAX_SECONDS - 1
        await inbox.world.store.redis.hset(key, "created_at", str(old))
        assert (await client.get("/inbox", allow_redirects=False)).status == 302
        assert await inbox.world.store.redis.keys(AccountKeys.session("*")) == []


async def test_an_idle_session_expires_in_the_store(inbox: Inbox) -> None:
    from router.app.inbox import sessions

    client, _token = await logged_in(inbox, "amy")
    async with client:
        [key] = await inbox.world.store.redis.keys(AccountKeys.session("*"))
        assert 0 < await inbox.world.store.redis.ttl(key) <= sessions.IDLE_SECONDS


async def test_the_inbox_is_a_sub_application_whose_sessions_and_headers_stay_off_other_paths(inbox: Inbox):
    async with inbox.client() as client:
        page = await client.get("/inbox/login")
        assert page.status == 200 and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        root = await client.get("/inbox", allow_redirects=False)  # the mount point itself is the inbox page
        assert root.status == 302 and root.headers["Location"] == "/inbox/login"
        health = await client.get("/healthz")
        assert health.status == 200 and "Content-Security-Policy" not in health.headers
        # a provider's POST from anywhere is no cross-origin form: the inbox's CSRF guard never sees it
        webhook = await client.post("/webchat/acme/offline", data={"x": "1"}, headers={"Origin": "https://evil.test"})
        assert "cross-origin request refused" not in await webhook.text()
        assert "Content-Security-Policy" not in webhook.headers


async def test_an_id_in_a_url_that_is_not_of_its_shape_is_404_not_another_key(inbox: Inbox) -> None:
    """`<id>:log` names the conversation's history list: read as its hash it answered 500."""
    w = inbox.world
    await agents_available(w, "acme", "amy")
    conversation = await w.deliver(_contact("acme"))
    client, token = await logged_in(inbox, "sue")  # a supervisor may see every conversation of acme
    async with client:
        assert (await client.get(f"/inbox/t/acme/c/{conversation}")).status == 200
        for suffix in (":log", ":declined", ".1", "%3Alog"):
            assert (await client.get(f"/inbox/t/acme/c/{conversation}{suffix}")).status == 404, suffix
            assert (await client.get(f"/inbox/t/acme/c/{conversation}{suffix}/messages.json")).status == 404
        response = await client.post(f"/inbox/t/acme/c/{conversation}:log/note", data={"csrf": token, "text": "x"})
        assert response.status == 404
        [offer] = await agents_offers(w, "acme", "amy")
        bad = offer["reservation"].replace(".", ":")
        response = await client.post(f"/inbox/t/acme/offers/{bad}/accept", data={"csrf": token})
        assert response.status == 404


async def test_offers_lists_and_the_conversation_show_the_customers_name_and_an_agent_can_correct_it(
    inbox: Inbox,
) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        await w.available("amy")
        conversation = await w.arrive(channel="email", address="ana@example.com", name="Ana L.", body="Hi there")
        state = await (await client.get("/inbox/state.json")).json()
        [offer] = state["offers"]
        assert (offer["customer"], offer["address"]) == ("Ana L.", "ana@example.com")
        await w.accept_offer("amy")
        state = await (await client.get("/inbox/state.json")).json()
        assert [c["customer"] for c in state["conversations"]] == ["Ana L."]
        live = await (await client.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json()
        assert live["entries"][0]["address"] == "Ana L. <ana@example.com>"

        response = await client.post(
            f"/inbox/t/acme/c/{conversation}/rename", data={"csrf": token, "name": "Ana Lima"}, allow_redirects=False
        )
        assert response.headers["Location"] == f"/inbox/t/acme/c/{conversation}?done=renamed"
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert '<span id="customer">Ana Lima</span>' in page and "<title>Ana Lima · Agent inbox</title>" in page
        state = await (await client.get("/inbox/state.json")).json()
        assert [c["customer"] for c in state["conversations"]] == ["Ana Lima"]
        forged = await client.post(f"/inbox/t/acme/c/{conversation}/rename", data={"name": "Mallory"})
        assert forged.status == 403  # no CSRF token
    sue, _token = await logged_in(inbox, "sue")
    async with sue:
        floor = await (await sue.get("/inbox/floor.json")).json()
        [acme] = floor["tenants"]
        assert [c["customer"] for c in acme["in_progress"]] == ["Ana Lima"]
        query = {"go": "1", "tenant": "acme", "address": "ana@example.com"}
        results = await (await sue.get("/inbox/search", params=query)).text()
        assert ">Ana Lima</a> <small>ana@example.com</small>" in results


async def test_an_agent_links_another_address_to_the_customer_and_what_comes_from_it_joins_their_history(
    inbox: Inbox,
) -> None:
    w = inbox.world
    client, token = await logged_in(inbox, "amy")
    async with client:
        conversation = await w.assigned_to("amy", address="+15551230000", body="my meter")
        form = {"csrf": token, "kind": "email", "address": "Ana@Example.com"}
        response = await client.post(f"/inbox/t/acme/c/{conversation}/link", data=form, allow_redirects=False)
        assert response.headers["Location"] == f"/inbox/t/acme/c/{conversation}?done=linked"
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert '<li class="ident">Email ana@example.com</li>' in page
        assert await w.arrive(channel="email", address="ana@example.com", body="the photo") == conversation
        bad = {"csrf": token, "kind": "phone", "address": "not a number"}
        refused = await client.post(f"/inbox/t/acme/c/{conversation}/link", data=bad)
        assert refused.status == 409 and "not a phone number" in await refused.text()


async def test_the_desk_speaks_the_browsers_language_until_the_agent_picks_one(inbox: Inbox) -> None:
    async with inbox.client() as client:
        login_page = await client.get("/inbox/login", headers={"Accept-Language": "zh-TW,zh;q=0.9"})
        html = await login_page.text()
        assert '<html lang="zh-Hant">' in html and "<h1>登入</h1>" in html
        assert (await log_in(client, "amy")).status == 303
        home = await (await client.get("/inbox", headers={"Accept-Language": "zh-CN"})).text()
        assert "在线状态" in home and "Presence" not in home
        token = csrf_of(home)

        picked = await client.post(
            "/inbox/language",
            data={"csrf": token, "locale": "zh_Hant", "next": "/inbox?tab=mine"},
            allow_redirects=False,
        )
        assert picked.status == 303 and picked.headers["Location"] == "/inbox?tab=mine"
        assert (await accounts.get(inbox.world.store, "amy")).locale == "zh_Hant"  # stored with the login
        home = await (await client.get("/inbox", headers={"Accept-Language": "zh-CN"})).text()
        assert "上線狀態" in home and '<option value="zh_Hant" lang="zh-Hant" selected>繁體中文</option>' in home

        refused = await client.post("/inbox/language", data={"csrf": token, "locale": "xx"}, allow_redirects=False)
        assert refused.status == 400
        elsewhere = await client.post(
            "/inbox/language",
            data={"csrf": token, "locale": "", "next": "https://evil.example/"},
            allow_redirects=False,
        )
        assert elsewhere.headers["Location"] == "/inbox"  # back to following the browser, and never off-site
        home = await (await client.get("/inbox", headers={"Accept-Language": "en-GB"})).text()
        assert "Presence" in home and '<html lang="en">' in home
