"""The web chat widget in Debian's chromium: a visitor on a page with the one script tag
talks to an agent who answers through the core API; routing and the dispatcher run
in-process on the same embedded store, as `contactrouter up` runs them."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import TestServer
from PIL import Image
from playwright.async_api import Browser, Page, expect

from channels.webchat import signals
from channels.webchat.outbound import WebchatSender
from router import agents, bus, events
from router.app import processes, web
from router.app.inbox import accounts
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.browser.test_inbox import log_in
from tests.factories import World, world
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes  # noqa: F401 - autouse: cheap Argon2id
from workers import routing
from workers.dispatch import Dispatcher

ACME = """
[[tenants]]
id = "acme"
name = "Acme Energy"
brand_color = "#c2410c"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"
{hours}

[[tenants.queues]]
id = "billing"
target = "'support' in skills"

[[tenants.agents]]
id = "alice"
name = "Alice Martin"
skills = { support = 1 }

[tenants.webchat]
greeting = "Hi! Ask us anything about your energy supply."
demo_page = true
allowed_origins = ["https://www.acme.example"]
{webchat}
"""


def acme(hours: str = "", webchat: str = "") -> str:
    return ACME.replace("{hours}", hours).replace("{webchat}", webchat)


@asynccontextmanager
async def running(w: World, attachments: Path | None = None) -> AsyncIterator[TestServer]:
    """The web app on a free port, with a routing worker and a web chat dispatcher beside it."""
    settings = Settings(consumer="browser-test", block_ms=50, attachment_dir=str(attachments or ""))
    await processes.prepare(w.store, w.deployment)
    stop = asyncio.Event()
    outbound = Keys("acme").outbound
    dispatcher = Dispatcher(w.store, {"webchat": WebchatSender(w.store, w.deployment)})
    delivery = bus.Consumer(w.store, DISPATCH_GROUP, "browser-test", [outbound], dispatcher.handle, block_ms=50)
    workers = [
        asyncio.create_task(routing.run(w.store, w.deployment, settings, stop)),
        asyncio.create_task(delivery.run(stop)),
    ]
    try:
        async with TestServer(web.application(w.store, w.deployment, settings)) as server:
            yield server
    finally:
        stop.set()
        await asyncio.gather(*workers)


async def offered_conversation(w: World, agent: str) -> str:
    """The agent accepts the offer routing made them; returns its conversation."""
    for _ in range(100):
        offers = await agents.offers(w.store, w.tenant, agent)
        if offers:
            await agents.accept(w.store, w.tenant, agent, offers[0]["reservation"])
            return offers[0]["conv"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing was offered to {agent}")


async def open_widget(page: Page, url: str) -> None:
    page.set_default_timeout(5_000)
    await page.goto(url)
    await page.get_by_role("button", name="Chat with Acme Energy").click()
    await expect(page.locator(".greeting")).to_have_text("Hi! Ask us anything about your energy supply.")


async def write(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_role("button", name="Send", exact=True).click()


async def test_a_visitor_chats_with_an_agent_and_a_reload_keeps_the_history(browser: Browser, artifacts: Path) -> None:
    w = await world(acme())
    await w.available("alice")
    async with running(w) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        await write(page, "My meter reading looks wrong")
        await expect(page.locator(".msg.in .state")).to_have_text("Sent")

        conversation = await offered_conversation(w, "alice")
        await agents.reply(w.store, w.tenant, "alice", conversation, "Sorry about that, checking it now.")
        reply = page.locator(".msg.out")
        await expect(reply.locator(".text")).to_have_text("Sorry about that, checking it now.")
        await expect(reply.locator(".who")).to_have_text("Alice Martin")
        await page.screenshot(path=artifacts / "webchat-reply.png")
        sent = await agents.reply(w.store, w.tenant, "alice", conversation, "Anything else?")
        await expect(reply.locator(".text").last).to_have_text("Anything else?")
        for _ in range(100):  # the open panel tells the inbox the visitor has read it
            marks = [s for _id, s in await signals.read_signals(w.store, "acme") if s.type == "read"]
            if marks and marks[-1].up_to == sent.id:
                break
            await asyncio.sleep(0.05)
        assert marks and (marks[-1].up_to, marks[-1].conversation) == (sent.id, conversation)

        await page.reload()  # the panel stays open, the same visitor, the same conversation
        await expect(page.locator(".msg .text")).to_have_text(
            ["My meter reading looks wrong", "Sorry about that, checking it now.", "Anything else?"]
        )
        await write(page, "Thanks!")
        await expect(page.locator(".msg.in .state").last).to_have_text("Sent")

    bodies = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(Keys("acme").inbound)]
    assert [c.body for c in bodies] == ["My meter reading looks wrong", "Thanks!"]
    assert bodies[0].address == bodies[1].address  # one visitor across the reload


async def test_what_visitors_and_agents_write_is_shown_as_text(browser: Browser) -> None:
    w = await world(acme())
    await w.available("alice")
    attack = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    async with running(w) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        await write(page, attack)
        await expect(page.locator(".msg.in .text")).to_have_text(attack)

        conversation = await offered_conversation(w, "alice")
        await agents.reply(w.store, w.tenant, "alice", conversation, "<b>bold?</b> <i>no</i>")
        await expect(page.locator(".msg.out .text")).to_have_text("<b>bold?</b> <i>no</i>")
        assert await page.locator(".msg script, .msg img, .msg b").count() == 0
        assert await page.evaluate("window.pwned") is None


async def test_a_widget_copied_onto_another_site_is_refused(browser: Browser, caplog: pytest.LogCaptureFixture) -> None:
    w = await world(acme())
    async with running(w) as server:
        widget = server.make_url("/webchat/acme/widget.js")

        async def foreign_page(_request: aiohttp_web.Request) -> aiohttp_web.Response:
            html = f'<!doctype html><title>Not Acme</title><p>elsewhere</p><script src="{widget}"></script>'
            return aiohttp_web.Response(text=html, content_type="text/html")

        other = aiohttp_web.Application()
        other.router.add_get("/", foreign_page)
        async with TestServer(other) as elsewhere:
            foreign = f"http://127.0.0.1:{elsewhere.port}"
            page = await browser.new_page()
            page.set_default_timeout(5_000)
            with caplog.at_level(logging.WARNING, logger="channels.webchat.socket"):
                await page.goto(str(elsewhere.make_url("/")))
                await page.get_by_role("button", name="Chat with Acme Energy").click()
                await expect(page.locator(".notice")).to_have_text("Chat is not available on this site.")
            assert await page.get_by_label("Message", exact=True).is_hidden()
    assert f"origin '{foreign}' is not allowed" in caplog.text
    assert await w.store.redis.xlen(Keys("acme").inbound) == 0


async def test_after_hours_the_widget_takes_an_email_and_a_message(browser: Browser) -> None:
    w = await world(acme(hours='hours = { timezone = "UTC" }'))  # no opening hours at all
    async with running(w) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        await expect(page.get_by_label("Message", exact=True)).to_be_hidden()
        await page.get_by_label("Your email").fill("jane@example.com")
        await page.get_by_label("Your message").fill("Please call me back <tomorrow>")
        await page.get_by_role("button", name="Send", exact=True).click()
        await expect(page.locator(".notice")).to_have_text("Thank you! We will answer by email.")
    [contact] = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(Keys("acme").inbound)]
    assert (contact.channel, contact.address, contact.body) == (
        "email",
        "jane@example.com",
        "Please call me back <tomorrow>",
    )


async def test_the_prechat_topic_routes_and_the_visitor_sees_typing_and_sends_a_picture(
    browser: Browser, tmp_path: Path
) -> None:
    w = await world(
        acme(
            webchat='prechat = ["name", "topic"]\nprechat_required = ["topic"]\n'
            'topics = [{ label = "My meter", queue = "support" }, { label = "My bill", queue = "billing" }]',
        )
    )
    await w.available("alice")
    async with running(w, tmp_path) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        await expect(page.get_by_label("Message", exact=True)).to_be_hidden()
        await page.locator("form.prechat").get_by_label("Your name").fill("Jane")
        await page.get_by_role("button", name="Start chatting").click()
        await expect(page.get_by_text("please fill in your topic")).to_be_visible()
        await page.get_by_label("Topic *").select_option("My bill")
        await page.get_by_role("button", name="Start chatting").click()
        await write(page, "Why is my bill so high?")
        await expect(page.locator(".msg.in .state")).to_have_text("Sent")

        conversation = await offered_conversation(w, "alice")
        assert (await w.conversation(conversation))["queue"] == "billing"
        await signals.agent_typing(w.store, w.tenant, conversation, "alice")
        await expect(page.locator(".typing")).to_have_text("Alice Martin is typing\u2026")
        [question] = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(Keys("acme").inbound)]
        await signals.agent_read(w.store, w.tenant, conversation, question.id)
        await expect(page.locator(".msg.in .state")).to_have_text("Read")

        picture = io.BytesIO()
        Image.new("RGB", (8, 8), "green").save(picture, "PNG")
        await page.locator("input[type=file]").set_input_files(
            {"name": "meter.png", "mimeType": "image/png", "buffer": picture.getvalue()}
        )
        await expect(page.locator(".msg.in .file")).to_have_text("File: meter.png (1 kB)")
        await expect(page.locator(".msg.in .state").last).to_have_text("Sent")
    contacts = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(Keys("acme").inbound)]
    assert [(c.queue, c.body, len(c.attachments)) for c in contacts] == [
        ("billing", "Why is my bill so high?", 0),
        ("billing", "", 1),
    ]
    assert contacts[0].metadata == {
        "prechat_name": "Jane",
        "prechat_topic": "My bill",
        "page": page.url,
        "browser_language": await page.evaluate("navigator.language"),  # routing's fallback
    }


async def test_when_the_chat_cannot_be_reached_the_widget_offers_the_form_and_keeps_what_was_typed(
    browser: Browser,
) -> None:
    w = await world(acme())
    server = TestServer(web.application(w.store, w.deployment, Settings()))
    await server.start_server()
    page = await browser.new_page()
    page.set_default_timeout(5_000)
    await page.goto(str(server.make_url("/webchat/acme/demo")))
    await server.close()  # the router goes away after the page loaded

    await page.get_by_role("button", name="Chat with Acme Energy").click()
    await expect(page.locator("form.offline .hint")).to_have_text(
        "We can't reach the chat right now. Leave your email and a message, and we will write back."
    )
    await page.get_by_label("Your email").fill("jane@example.com")
    await page.get_by_label("Your message").fill("My meter is broken")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("form.offline .error")).to_contain_text("Not sent")
    await expect(page.get_by_label("Your message")).to_have_value("My meter is broken")


async def test_the_widget_reconnects_after_a_restart_and_sends_what_was_written_meanwhile(browser: Browser) -> None:
    w = await world(acme())
    first = TestServer(web.application(w.store, w.deployment, Settings()))
    await first.start_server()
    port = first.port
    page = await browser.new_page()
    page.set_default_timeout(8_000)
    await open_widget(page, str(first.make_url("/webchat/acme/demo")))
    await write(page, "Before the restart")
    await expect(page.locator(".msg.in .state")).to_have_text("Sent")

    await first.close()  # the web process restarts (a deploy)
    await expect(page.locator(".notice")).to_have_text("Reconnecting\u2026")
    await write(page, "During the restart")
    await expect(page.locator(".msg.in .state").last).to_have_text("Waiting for the connection\u2026")

    async with TestServer(web.application(w.store, w.deployment, Settings()), port=port):
        await expect(page.locator(".msg.in .state").last).to_have_text("Sent")
        await expect(page.locator(".notice")).to_be_hidden()
        await expect(page.locator(".msg .text")).to_have_text(["Before the restart", "During the restart"])
    contacts = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(Keys("acme").inbound)]
    assert [c.body for c in contacts] == ["Before the restart", "During the restart"]


async def chat_open_on_both_sides(browser: Browser, server: TestServer, w: World, first: str) -> tuple[Page, Page]:
    """A visitor wrote `first`; alice accepted it and has the conversation open: (visitor, agent)."""
    visitor = await browser.new_page()
    await open_widget(visitor, str(server.make_url("/webchat/acme/demo")))
    await write(visitor, first)
    await expect(visitor.locator(".msg.in .state")).to_have_text("Sent")
    conversation = await offered_conversation(w, "alice")
    agent = await log_in(browser, server, "alice")
    await agent.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
    return visitor, agent


async def test_an_agent_attaches_a_picture_in_the_inbox_and_the_visitor_sees_it(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    w = await world(acme())
    await accounts.add(w.store, "alice", PASSWORD, "agent", {"acme": "alice"})
    await w.available("alice")
    async with running(w, tmp_path) as server:
        visitor, agent = await chat_open_on_both_sides(browser, server, w, "Where is the meter's serial number?")
        picture = io.BytesIO()
        Image.new("RGB", (40, 30), "purple").save(picture, "PNG")
        await agent.fill("#reply-body", "Here, on the label:")
        await agent.locator("#reply-file").set_input_files(
            {"name": "label.png", "mimeType": "image/png", "buffer": picture.getvalue()}
        )
        await agent.click("#reply-form button[type=submit]")
        await expect(agent.locator(".done")).to_have_text("Reply sent.")
        await expect(agent.locator("#entries .entry-out .attachments a:not(.picture)")).to_have_text("label.png")
        await expect(agent.locator("#entries .entry-out .attachments img")).to_have_attribute("alt", "label.png")

        reply = visitor.locator(".msg.out")
        await expect(reply.locator(".text")).to_have_text("Here, on the label:")
        await expect(reply.locator("a.file")).to_have_text("File: label.png (1 kB)")
        preview = reply.locator("img.preview")
        await expect(preview).to_be_visible()
        await visitor.wait_for_function(
            "() => { const host = document.querySelector('[id^=contactrouter-webchat-]');"
            " const img = host.shadowRoot.querySelector('.msg.out img.preview');"
            " return img && img.complete && img.naturalWidth === 40; }"
        )
        await visitor.screenshot(path=artifacts / "webchat-agent-picture.png")


async def test_the_visitors_prechat_name_is_on_the_offer_the_list_the_conversation_and_a_canned_reply(
    browser: Browser, artifacts: Path
) -> None:
    w = await world(acme(webchat='prechat = ["name", "email"]'))
    await accounts.add(w.store, "alice", PASSWORD, "agent", {"acme": "alice"})
    async with running(w) as server:
        agent = await log_in(browser, server, "alice")
        await agent.select_option("select[name=presence]", "available")
        await agent.click("#presence-form button")
        await expect(agent.locator("body")).to_have_attribute("data-live", "on")

        visitor = await browser.new_page()
        await open_widget(visitor, str(server.make_url("/webchat/acme/demo")))
        await visitor.locator("form.prechat").get_by_label("Your name").fill("Jane Doe")
        await visitor.locator("form.prechat").get_by_label("Your email").fill("jane@example.com")
        await visitor.get_by_role("button", name="Start chatting").click()
        await write(visitor, "My meter reads zero")

        offer = agent.locator(".offer")
        await expect(offer.locator(".customer")).to_have_text("Jane Doe")  # live, not v-…
        await agent.screenshot(path=str(artifacts / "inbox-offer-named.png"), full_page=True)
        await offer.locator("button.accept").click()
        await expect(agent.locator("#customer")).to_have_text("Jane Doe")
        await expect(agent.locator("#prechat")).to_contain_text("jane@example.com")
        await expect(agent.locator("#entries .entry-in .meta")).to_contain_text("Jane Doe")
        await agent.select_option("#canned", label="greeting")
        await expect(agent.locator("#reply-body")).to_have_value(
            "Hello Jane, this is Alice Martin from Acme Energy. "
            "Thank you for getting in touch; I am looking into it now."
        )
        await agent.goto(str(server.make_url("/inbox")))
        await expect(agent.locator("#conversations .customer")).to_have_text("Jane Doe")
        assert "v-" not in await agent.locator("main").inner_text()  # no visitor id anywhere on the page


async def test_a_visitors_picture_appears_inline_live_in_the_agents_open_conversation(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    w = await world(acme())
    await accounts.add(w.store, "alice", PASSWORD, "agent", {"acme": "alice"})
    await w.available("alice")
    async with running(w, tmp_path) as server:
        visitor, agent = await chat_open_on_both_sides(browser, server, w, "Here is my meter")
        await expect(agent.locator("body")).to_have_attribute("data-live", "on")

        picture = io.BytesIO()
        Image.new("RGB", (48, 36), "orange").save(picture, "PNG")
        await visitor.locator("input[type=file]").set_input_files(
            {"name": "meter.png", "mimeType": "image/png", "buffer": picture.getvalue()}
        )
        shown = agent.locator("#entries .entry-in img")  # no reload
        await expect(shown).to_have_attribute("alt", "meter.png")
        await agent.wait_for_function(
            "() => { const img = document.querySelector('#entries .entry-in img');"
            " return img && img.complete && img.naturalWidth === 48; }"
        )
        await agent.screenshot(path=str(artifacts / "inbox-picture-live.png"), full_page=True)
