"""`contactrouter up`'s web chat demo page on a phone (390 x 844, as an iPhone 12-15's
screen), in Chromium: before, the page's long script tag made it 764 px wide and the
fixed-position Chat button sat off the screen's right edge."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from playwright.async_api import Browser, Locator, Page, expect

from tests.browser.test_webchat import running
from tests.factories import world

PHONE = {"width": 390, "height": 844}


async def on_screen(page: Page, locator: Locator) -> None:
    """The element is visible and wholly inside the screen, not scrolled or pushed off it."""
    await expect(locator).to_be_visible()
    box = await locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= PHONE["width"] and box["y"] + box["height"] <= PHONE["height"], box


async def test_the_demo_page_and_its_chat_fit_a_phone_screen(browser: Browser, artifacts: Path) -> None:
    w = await world(resources.files("router").joinpath("demo.toml").read_text("utf-8"))  # the demo's own tenants
    async with running(w) as server:
        context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        page = await context.new_page()
        page.set_default_timeout(5_000)
        await page.goto(str(server.make_url("/webchat/acme/demo")))
        launcher = page.get_by_role("button", name="Chat with Acme Energy")
        await on_screen(page, launcher)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
        await page.screenshot(path=str(artifacts / "webchat-demo-phone.png"))

        await launcher.tap()
        panel = page.get_by_role("dialog", name="Acme Energy")
        await on_screen(page, panel)
        await page.locator("form.prechat").get_by_label("Your name").fill("Jane Doe")
        await page.get_by_label("Topic *").select_option("My supply or meter")
        start = page.get_by_role("button", name="Start chatting")
        await on_screen(page, start)
        await start.tap()
        message = page.get_by_label("Message", exact=True)
        await on_screen(page, message)
        assert await message.evaluate("box => parseFloat(getComputedStyle(box).fontSize)") >= 16  # iOS: no zoom-in
        await message.fill("My meter reads zero")
        send = page.get_by_role("button", name="Send", exact=True)
        await on_screen(page, send)
        await send.tap()
        await expect(page.locator(".msg.in .state")).to_have_text("Sent")
        await on_screen(page, page.locator(".msg.in"))
        await on_screen(page, launcher)  # the panel leaves the button uncovered, to close it again
        await page.screenshot(path=str(artifacts / "webchat-demo-phone-chat.png"))
