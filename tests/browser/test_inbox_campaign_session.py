"""The campaign session in Chromium, by keyboard: the agent joins a preview campaign, reads
the next recipient's record and script, skips one with a reason and dials the next; axe
finds no serious violation on the page in any of those states."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from router.keys import Keys
from tests.browser.test_accessibility import violations
from tests.browser.test_inbox import log_in
from tests.router.test_inbox_campaign_session import PREVIEW
from tests.router.test_inbox_campaigns import AUDIENCE, DEPLOYMENT, NOON_NY
from tests.router.test_inbox_pages import cheap_hashes, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import Clock, create_campaign


async def test_the_agent_joins_skips_with_a_reason_and_dials_by_keyboard(browser: Browser) -> None:
    with Clock(NOON_NY, ticking=True):
        w, server = await start_inbox(DEPLOYMENT)
        async with server:
            await create_campaign(w, PREVIEW, AUDIENCE, rejected=1)
            amy = await log_in(browser, server, "amy")
            await amy.goto(str(server.make_url("/inbox/campaign-session")))
            card = amy.locator('section[data-campaign="calls"]')
            await expect(card).to_contain_text("You are not in this session.")
            assert await violations(amy) == []

            await card.get_by_role("button", name="Join June calls").focus()
            await amy.keyboard.press("Enter")
            await expect(card.locator("h3").first).to_have_text("Next: Jane (+12125550001)")
            await expect(card.locator(".campaign-script")).to_have_text("Ask Jane about $120.00.")
            assert await violations(amy) == []

            await card.get_by_label("Reason to skip").select_option("already_resolved")
            await card.get_by_role("button", name="Skip").focus()
            await amy.keyboard.press("Enter")
            await expect(amy.locator("#session-notice")).to_contain_text("Skipped")
            await expect(card.locator("h3").first).to_have_text("Next: <b>Bob</b> (+12125550002)")  # as text

            await card.get_by_role("button", name="Dial +12125550002").focus()
            await amy.keyboard.press("Enter")
            await expect(amy.locator("#session-notice")).to_contain_text("put through to you")
            assert await violations(amy) == []
            assert await w.store.redis.hget(Keys("acme").campaign_status("calls"), "2") == b"sent:1:voice"
