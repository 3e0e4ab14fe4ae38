"""A possible opt-out in a real browser (Debian's chromium): the agent sees the customer's
words on the conversation, confirms with the keyboard alone, and the page says so; the
card has no serious accessibility violation (axe-core)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from router.keys import Keys
from tests.browser.test_accessibility import violations
from tests.browser.test_inbox import log_in
from tests.router.test_inbox_pages import cheap_hashes, start_inbox  # noqa: F401 - autouse fixture

JANE = "+12125550000"


async def test_an_agent_confirms_a_possible_opt_out_with_the_keyboard(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to("amy", address=JANE, body="please stop texting me <b>now</b>")
        amy = await log_in(browser, server, "amy")
        problems: list[str] = []
        amy.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        amy.on("pageerror", lambda e: problems.append(str(e)))
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        card = amy.locator("section.revocation")
        await expect(card.locator("h2")).to_have_text("Possible opt-out: please confirm")
        await expect(card.locator("q")).to_have_text("stop texting me")
        assert await violations(amy) == []
        await amy.screenshot(path=str(artifacts / "revocation.png"), full_page=True)

        confirm = card.get_by_role("button", name="Confirm opt-out of SMS")
        await confirm.focus()
        await amy.keyboard.press("Enter")
        await expect(amy.locator(".done")).to_contain_text("Opt-out recorded")
        await expect(amy.locator("section.revocation")).to_have_count(0)
        assert await w.store.redis.sismember(Keys("acme").suppression("sms"), JANE)
        assert problems == []
