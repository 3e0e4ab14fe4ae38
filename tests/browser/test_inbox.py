"""The agent inbox in a real browser (Debian's chromium): the issue's flows end to end,
with the web process on a test server and routing run in-process as contacts arrive."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web as aioweb
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from channels.sandbox import outbox
from router import agents, bus
from tests.factories import World
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes, code_at, start_inbox, this_step  # noqa: F401 - fixture
from workers.dispatch import Dispatcher

TIMEOUT_MS = 10_000


async def log_in(browser: Browser, server: TestServer, login: str) -> Page:
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(str(server.make_url("/inbox/login")))
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    if page.url.endswith("/inbox/login/code"):  # a supervisor: their second factor is SECRET
        await page.fill("input[name=code]", code_at(this_step()))
        await page.click("#code-form button[type=submit]")
        await page.wait_for_load_state()
    return page


async def go_available(page: Page) -> None:
    await page.select_option("select[name=presence]", "available")
    await page.click("#presence-form button")
    await expect(page.locator(".done")).to_have_text("Presence changed.")


async def dispatch(w: World) -> None:
    """What the dispatch worker does: the queued replies go to the sandbox outbox."""
    rows = await w.store.redis.xrange(w.keys.outbound)
    entries = [bus.Entry(w.keys.outbound, entry_id.decode(), fields[b"e"]) for entry_id, fields in rows]
    await Dispatcher(w.store).handle(entries)


async def test_an_sms_is_offered_accepted_answered_transferred_live_and_closed(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)

        conversation = await w.arrive(channel="sms", address="+15551230000", body="My meter reads zero")
        offer = amy.locator(".offer")  # arrives over the websocket: no reload
        await expect(offer).to_contain_text("My meter reads zero")
        await expect(offer.locator(".countdown")).to_contain_text("left")
        await amy.screenshot(path=str(artifacts / "inbox-offer.png"), full_page=True)

        await offer.locator("button.accept").click()
        await expect(amy.locator(".done")).to_have_text("Offer accepted.")
        await amy.fill("#reply-body", "An engineer is on the way.")
        await amy.click("#reply-form button[type=submit]")
        await expect(amy.locator(".done")).to_have_text("Reply sent.")
        await expect(amy.locator("#entries .entry-out .status")).to_have_text("queued")
        await dispatch(w)
        await expect(amy.locator("#entries .entry-out .status")).to_have_text("sent")  # the report, live
        [(_id, _provider, sms)] = await outbox(w.store, "acme")
        assert (sms.channel, sms.to, sms.body) == ("sms", "+15551230000", "An engineer is on the way.")

        zoe = await log_in(browser, server, "zoe")
        await go_available(zoe)
        await expect(zoe.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        await expect(zoe.locator("#no-offers")).to_be_visible()

        await amy.select_option("#transfer-form select[name=target]", "agent:zoe")
        await amy.fill("#transfer-form input[name=note]", "meter exchange needed")
        await amy.click("#transfer-form button")
        await expect(amy.locator(".done")).to_have_text("Conversation transferred.")

        colleague_offer = zoe.locator(".offer")  # live, on the page zoe already had open
        await expect(colleague_offer).to_contain_text("+1 555-123-0000")
        await colleague_offer.locator("button.accept").click()
        await expect(zoe.locator("#entries")).to_contain_text("Transfer note: meter exchange needed")
        await expect(zoe.locator("#entries")).to_contain_text("An engineer is on the way.")
        await zoe.select_option("#close-form select[name=disposition]", "promise_to_pay")
        await zoe.fill("#close-form input[name=promise_amount]", "120.50")
        await zoe.fill("#close-form input[name=promise_date]", "2099-01-31")
        await zoe.click("#close-form button")
        await expect(zoe.locator(".done")).to_have_text("Conversation closed.")
        await expect(zoe.locator("#wrapup-form")).to_be_visible()
        record = await w.conversation(conversation)
        assert (record["state"], record["agent"], record["disposition"]) == ("closed", "zoe", "promise_to_pay")

        await zoe.goto(str(server.make_url("/inbox")))
        await zoe.screenshot(path=str(artifacts / "inbox.png"), full_page=True)

        sue = await log_in(browser, server, "sue")
        await sue.goto(str(server.make_url("/inbox/floor")))
        acme = sue.locator('section[data-tenant="acme"]')
        await expect(acme.locator('tr[data-agent="zoe"]')).to_contain_text("available")
        await agents.set_presence(w.store, w.tenant, "amy", "away", "training")
        await w.arrive(address="+15551239999", body="still waiting")
        await expect(acme.locator('tr[data-agent="amy"]')).to_contain_text("away (training)")  # live
        await expect(acme.locator('tr[data-queue="support"] .waiting')).to_have_text("0")  # zoe was offered it
        await agents.set_presence(w.store, w.tenant, "zoe", "away", "lunch")  # hands the offer back
        await expect(acme.locator('tr[data-queue="support"] .waiting')).to_have_text("1")
        await sue.screenshot(path=str(artifacts / "floor.png"), full_page=True)


async def test_a_colleague_on_cc_who_replied_is_marked_live_and_copied_only_when_ticked(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to(
            "amy", channel="email", address="jane@example.com", name="Jane Doe", body="What is my balance?",
            provider_id="<m1@example.com>", metadata={"cc": "bob@corp.example"},
        )  # fmt: skip
        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        await w.arrive(
            channel="email", address="bob@corp.example", name="Bob Lee", body="Send it to me instead",
            provider_id="<m2@corp.example>", thread=("<m1@example.com>",),
        )  # fmt: skip
        bob = amy.locator("#entries .entry-in").last  # arrives over the websocket
        await expect(bob).to_contain_text("Send it to me instead")
        await expect(bob.locator(".meta")).to_contain_text("Bob Lee <bob@corp.example> (not the customer)")
        await amy.reload()
        await expect(amy.locator("#reply-to")).to_have_value("email|jane@example.com")  # the default
        await expect(amy.locator("#reply-to option").nth(1)).to_have_text("Email bob@corp.example (not the customer)")
        await amy.screenshot(path=str(artifacts / "conversation-participant.png"), full_page=True)

        await amy.fill("#reply-body", "Your balance is 1,204.")
        await amy.focus("#reply-to")
        await amy.keyboard.press("Tab")  # the Cc box comes next, by keyboard too
        await expect(amy.locator("#reply-cc")).to_be_focused()
        await amy.keyboard.press("Space")
        await expect(amy.locator("#reply-cc")).to_be_checked()
        await amy.click("#reply-form button[type=submit]")
        await expect(amy.locator(".done")).to_have_text("Reply sent.")
        [sent] = await w.outgoing()
        assert (sent.to, sent.cc) == ("jane@example.com", ("bob@corp.example",))
        await expect(amy.locator("#entries .entry-out .meta")).to_contain_text("(Cc: bob@corp.example)")


async def test_an_agent_of_one_tenant_cannot_open_another_tenants_conversation(browser: Browser) -> None:
    from router import agents
    from tests.factories import contact

    w, server = await start_inbox()
    async with server:
        await agents.set_presence(w.store, w.deployment.tenant("globex"), "gus", "available")
        theirs = await w.deliver(contact("globex", body="globex only"))
        amy = await log_in(browser, server, "amy")
        for url in (f"/inbox/t/globex/c/{theirs}", f"/inbox/t/acme/c/{theirs}"):
            response = await amy.goto(str(server.make_url(url)))
            assert response is not None and response.status == 404
            assert "globex only" not in await amy.content()
        gus = await log_in(browser, server, "gus")
        response = await gus.goto(str(server.make_url(f"/inbox/t/globex/c/{theirs}")))
        assert response is not None and response.status == 200


async def test_a_message_with_html_and_script_is_displayed_inert(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script><b>bold?</b>'
        amy = await log_in(browser, server, "amy")
        dialogs: list[str] = []
        amy.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        conversation = await w.arrive(body=hostile)
        await expect(amy.locator(".offer .preview")).to_have_text(hostile)  # drawn live, as text
        await amy.locator(".offer button.accept").click()
        await expect(amy.locator("#entries .entry-in .body")).to_have_text(hostile)
        await w.arrive(body='<svg onload="alert(1)"></svg> second')  # appended live by the script
        await expect(amy.locator("#entries .entry-in .body").last).to_have_text('<svg onload="alert(1)"></svg> second')
        assert await amy.evaluate("window.pwned === undefined")
        assert await amy.locator("#entries b, #entries img, #entries svg").count() == 0
        assert dialogs == []
        assert (await w.conversation(conversation))["state"] == "assigned"


async def test_posts_without_the_csrf_token_are_refused(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        status = await amy.evaluate(
            """async () => (await fetch('/inbox/presence', {method: 'POST',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                 body: 'presence=available'})).status"""
        )
        assert status == 403
        # a page on another origin that posts the form into the inbox, with the agent's cookies
        target = str(server.make_url("/inbox/presence"))

        async def evil(_request: aioweb.Request) -> aioweb.Response:
            form = f'<form method="post" action="{target}"><input name="presence" value="available"></form>'
            return aioweb.Response(text=form + "<script>document.forms[0].submit()</script>", content_type="text/html")

        other = aioweb.Application()
        other.router.add_get("/", evil)
        async with TestServer(other) as attacker:
            response_statuses: list[int] = []
            amy.on("response", lambda r: response_statuses.append(r.status) if r.url == target else None)
            await amy.goto(str(attacker.make_url("/")))
            await amy.wait_for_url(target)
            assert response_statuses == [403]
        assert (await w.agent("amy")).get("presence", "offline") == "offline"


async def test_in_a_web_chat_each_side_sees_the_other_typing(browser: Browser) -> None:
    from channels.webchat import signals, transcript

    w, server = await start_inbox()
    async with server:
        await w.available("amy")
        conversation = await w.arrive(channel="webchat", address="v-visitor", body="hello?")
        await w.accept_offer("amy")
        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        typing = signals.VisitorSignal(type="typing", visitor="v-visitor", conversation=conversation, at=0, active=True)
        await signals.from_visitor(w.store, "acme", typing)
        await expect(amy.locator("#typing")).to_be_visible()
        await amy.type("#reply-body", "Hi")
        for _ in range(100):
            rows = await w.store.redis.xrange(w.keys.webchat_live)
            shown = [transcript.decode(fields[b"e"]) for _id, fields in rows]
            if any(item.type == "typing" and item.active for item in shown):
                break
            await amy.wait_for_timeout(50)
        assert any(item.type == "typing" and item.agent == "Amy Adams" for item in shown)
        assert any(item.type == "read" for item in shown)  # opening the chat marked the visitor's message read


async def test_the_page_goes_to_the_login_soon_after_the_password_is_changed(browser: Browser, monkeypatch) -> None:
    import re

    from router.app.inbox import accounts, live

    monkeypatch.setattr(live, "SESSION_CHECK_S", 0.2)
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        await accounts.set_password(w.store, "amy", "a brand new long password")
        await expect(amy).to_have_url(re.compile(r"/inbox/login$"), timeout=TIMEOUT_MS)
        await expect(amy.locator("input[name=login]")).to_be_visible()
