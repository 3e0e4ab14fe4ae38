"""What calls an agent's attention, in Chromium (issue 16, item 4): a tone, a browser
notification and the title's count for a new offer and for a customer's message in a
conversation not on screen; an offer that is about to expire, or has, says so; keyboard
shortcuts; canned replies by "/" in the reply box.

The page's tones and notifications are observed, not replaced: a script added before the
page's own records each Notification made and each oscillator started, then lets the
browser's own Web Audio and Notification objects do their work."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from router import timers
from router.app.inbox import canned
from tests.browser.test_inbox import TIMEOUT_MS, go_available
from tests.factories import World
from tests.router.test_inbox_pages import DEPLOYMENT, PASSWORD, cheap_hashes, start_inbox  # noqa: F401 - autouse

OBSERVE = """
window.__notifications = [];
window.__tones = [];
if (window.Notification) {
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title: title, body: (options && options.body) || "" });
    }
  };
}
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.__tones.push(this.frequency.value);
  return start.apply(this, args);
};
"""


async def desk(browser: Browser, server: TestServer, login: str, *, notifications: bool = True) -> Page:
    """A logged-in page whose tones and notifications are recorded; notifications allowed."""
    context = await browser.new_context()
    if notifications:
        await context.grant_permissions(["notifications"], origin=str(server.make_url("/")).rstrip("/"))
    await context.add_init_script(OBSERVE)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(str(server.make_url("/inbox/login")))
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    return page


async def notifications(page: Page, count: int) -> list[dict[str, str]]:
    """The notifications the page made, once it has made `count` of them."""
    await page.wait_for_function("(count) => window.__notifications.length >= count", arg=count)
    return await page.evaluate("window.__notifications")


async def test_a_new_offer_chimes_notifies_and_counts_in_the_title(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await desk(browser, server, "amy", notifications=False)
        # browsers ask for permission only after a click: the button asks, then goes
        enable = amy.get_by_role("button", name="Enable notifications")
        await expect(enable).to_be_visible()
        await amy.context.grant_permissions(["notifications"], origin=str(server.make_url("/")).rstrip("/"))
        await enable.click()
        await expect(enable).to_be_hidden()
        await expect(amy.locator("#attention-status")).to_have_text("Notifications are on.")

        hint = amy.locator("#presence-hint")  # offline: the page says why nothing is offered
        await expect(hint).to_have_text(re.compile(r"^You are not available, so no contacts are offered to you"))
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await expect(hint).to_be_hidden()
        await expect(amy).to_have_title("Agent inbox")
        await w.arrive(address="+15551230000", body="My meter reads zero")
        await expect(amy.locator(".offer")).to_contain_text("My meter reads zero")
        await expect(amy).to_have_title("(1) Agent inbox")
        assert await notifications(amy, 1) == [
            {"title": "New offer: +1 555-123-0000", "body": "SMS · Acme Energy\nMy meter reads zero"}
        ]
        assert await amy.evaluate("window.__tones") == [880, 1320]  # an offer's two rising notes
        await expect(amy.locator("#attention-status")).to_have_text("1 new offer.")

        await amy.get_by_role("button", name="Sound on").click()  # an agent who wants quiet
        await expect(amy.get_by_role("button", name="Sound off")).to_have_attribute("aria-pressed", "false")
        await w.arrive(address="+15551230001", body="second")  # zoe is away: amy has room for it
        await expect(amy).to_have_title("(2) Agent inbox")
        assert [n["title"] for n in await notifications(amy, 2)][1] == "New offer: +1 555-123-0001"
        assert await amy.evaluate("window.__tones") == [880, 1320]  # no tone this time


async def test_a_message_in_a_conversation_not_on_screen_alerts_and_one_on_screen_does_not(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        elsewhere = await w.assigned_to("amy", address="+15550000001", body="first customer")
        here = await w.assigned_to("amy", address="+15550000002", body="second customer")
        amy = await desk(browser, server, "amy")
        await expect(amy).to_have_title("(2) Agent inbox")  # two conversations with unread messages
        await expect(amy.locator("#attention-status")).to_have_text("")  # there when the page opened: no alert
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{elsewhere}")))
        await expect(amy).to_have_title("(1) +1 555-000-0001 · Agent inbox")  # the other one is still unread
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{here}")))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        title = "+1 555-000-0002 · Agent inbox"
        await expect(amy).to_have_title(title)  # both read now

        await w.arrive(address="+15550000001", body="are you still there?")
        assert await notifications(amy, 1) == [
            {"title": "New message from +1 555-000-0001", "body": "are you still there?"}
        ]
        await expect(amy).to_have_title(f"(1) {title}")
        assert await amy.evaluate("window.__tones") == [660]  # a message's one note

        await w.arrive(address="+15550000002", body="on screen already")
        await expect(amy.locator("#entries .entry-in .body").last).to_have_text("on screen already")
        await w.arrive(address="+15550000001", body="hello??")
        assert [n["body"] for n in await notifications(amy, 2)] == ["are you still there?", "hello??"]
        await expect(amy).to_have_title(f"(1) {title}")  # one conversation unread, however many messages
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{elsewhere}")))  # reading it clears the count
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await expect(amy).not_to_have_title(re.compile(r"^\(\d+\)"))


SHORT_OFFERS = DEPLOYMENT.replace("wrapup_seconds = 60\n", "wrapup_seconds = 60\nreservation_timeout = 8\n", 1)


async def test_an_offer_about_to_expire_says_so_and_one_that_expired_says_it_did(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox(SHORT_OFFERS)
    async with server:
        amy = await desk(browser, server, "amy")
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        conversation = await w.arrive(address="+15551230000", body="hello")
        offer = amy.locator(".offer")
        await expect(offer.locator(".countdown")).to_contain_text(re.compile(r"^expiring: \d s left$"))
        await expect(offer).to_have_class(re.compile(r"\bexpiring\b"))
        await expect(amy.locator("#attention-status")).to_contain_text("The offer from +1 555-123-0000 expires in")

        [reservation] = [o["reservation"] for o in await _offers(w, "amy")]
        await timers.handle(w.store, w.tenant, f"res:{reservation}")  # the timers worker's due timeout
        await expect(offer).to_have_class(re.compile(r"\bexpired\b"))
        await expect(offer).to_contain_text("Expired: it went back to the queue.")
        await expect(offer.get_by_role("button", name="Accept")).to_have_count(0)
        await amy.screenshot(path=str(artifacts / "inbox-offer-expired.png"))
        await expect(amy).to_have_title("Agent inbox")
        await offer.get_by_role("button", name="Dismiss").click()
        await expect(amy.locator(".offer")).to_have_count(0)
        await expect(amy.locator("#no-offers")).to_be_visible()
        assert (await w.conversation(conversation))["state"] == "queued"


async def _offers(w: World, agent: str) -> list[dict[str, str]]:
    from router import agents

    return await agents.offers(w.store, w.tenant, agent)


async def test_keyboard_shortcuts_accept_move_focus_and_send_but_never_while_typing(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox()
    async with server:
        first = await w.assigned_to("amy", address="+15550000001", body="first customer")
        amy = await desk(browser, server, "amy")
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        second = await w.arrive(address="+15550000002", body="second customer")
        await expect(amy.locator(".offer")).to_contain_text("second customer")

        await amy.keyboard.press("?")
        help_list = amy.get_by_role("dialog", name="Keyboard shortcuts")
        await expect(help_list).to_be_visible()
        await expect(help_list).to_contain_text("Accept the first offer")
        await amy.screenshot(path=str(artifacts / "inbox-shortcuts.png"))
        await amy.keyboard.press("a")  # the dialog is open: no accepting behind it
        await amy.keyboard.press("Escape")
        await expect(help_list).to_be_hidden()

        await amy.fill("input[name=reason]", "")
        await amy.type("input[name=reason]", "a j k r i")  # typing in a box: letters are letters
        await expect(amy.locator("input[name=reason]")).to_have_value("a j k r i")
        await expect(amy).to_have_url(re.compile(r"/inbox\?done=presence$"))
        await amy.locator("input[name=reason]").blur()

        await amy.keyboard.press("a")
        await expect(amy.locator(".done")).to_have_text("Offer accepted.")
        await expect(amy).to_have_url(re.compile(rf"/c/{second}\?done=accepted$"))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await amy.keyboard.press("r")
        await expect(amy.locator("#reply-body")).to_be_focused()
        await amy.keyboard.type("just a moment")
        await amy.keyboard.press("Control+Enter")
        await expect(amy.locator(".done")).to_have_text("Reply sent.")
        await expect(amy.locator("#entries .entry-out .body")).to_have_text("just a moment")

        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await amy.keyboard.press("j")  # the list is newest first: the first conversation is next
        await expect(amy).to_have_url(re.compile(rf"/c/{first}$"))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await amy.keyboard.press("k")
        await expect(amy).to_have_url(re.compile(rf"/c/{second}$"))
        await amy.keyboard.press("i")
        await expect(amy).to_have_url(re.compile(r"/inbox$"))

        # single-key shortcuts can be turned off (speech input types letters)
        await amy.get_by_role("button", name="Shortcuts").click()
        await amy.get_by_label("Single-key shortcuts").uncheck()
        await amy.keyboard.press("Escape")
        await amy.keyboard.press("?")
        await expect(help_list).to_be_hidden()


async def test_slash_in_the_reply_box_lists_the_canned_replies_filtered_as_typed(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to("amy", address="+15550000001", body="my bill is wrong")
        amy = await desk(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        fields = canned.fields("", "Amy Adams", "Acme Energy")
        names = [c["name"] for c in canned.replies(w.tenant, fields)]
        assert names == ["greeting", "meter reading", "payment plan"]  # templates/inbox/canned/acme

        box = amy.locator("#reply-body")
        await box.click()
        await amy.keyboard.type("/")
        picker = amy.get_by_role("listbox", name="Canned replies")
        await expect(picker.get_by_role("option")).to_have_count(3)
        await amy.keyboard.type("pay")
        await expect(picker.get_by_role("option")).to_have_count(1)
        await expect(picker.get_by_role("option")).to_contain_text("payment plan")
        await amy.keyboard.press("Backspace")
        await amy.keyboard.press("Backspace")
        await amy.keyboard.press("Backspace")
        await amy.keyboard.type("e")  # "greeting", "meter reading", "payment plan": all have an e
        await expect(picker.get_by_role("option")).to_have_count(3)
        await amy.keyboard.press("ArrowDown")
        await expect(picker.get_by_role("option", selected=True)).to_contain_text("meter reading")
        await amy.screenshot(path=str(artifacts / "inbox-canned-picker.png"), full_page=True)
        await amy.keyboard.press("Enter")
        await expect(picker).to_be_hidden()
        await expect(box).to_have_value(re.compile(r"^Could you send us a photo of your meter"))

        await box.fill("")
        await amy.keyboard.type("/nothing like it")
        await expect(picker).to_contain_text("No canned reply matches.")
        await amy.keyboard.press("Escape")
        await expect(picker).to_be_hidden()
        await box.fill("Half way / through a sentence")  # only at the start
        await expect(picker).to_be_hidden()
        await box.fill("")
        await amy.keyboard.type("/greet")
        await amy.keyboard.press("Tab")
        await expect(box).to_have_value(re.compile(r"^Hello, this is Amy Adams from Acme Energy"))
        await amy.keyboard.press("Control+Enter")
        await expect(amy.locator(".done")).to_have_text("Reply sent.")
