"""The agent's side of a campaign call in Chromium: the script beside the conversation,
scheduling the callback the customer asks for with the keyboard alone, the Callbacks page
it lands on, and "Do not call again"; axe finds no serious violation on either page."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, expect

from router.keys import Keys
from tests.browser.test_accessibility import violations
from tests.browser.test_inbox import log_in
from tests.router.test_inbox_campaign_dialler import SCRIPTED
from tests.router.test_inbox_campaigns import AUDIENCE, DEPLOYMENT, NOON_NY
from tests.router.test_inbox_pages import cheap_hashes, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import create_campaign
from workers.campaigns.worker import CampaignWorker


async def test_the_agent_reads_the_script_schedules_the_callback_by_keyboard_and_stops_the_calls(
    browser: Browser,
) -> None:
    w, server = await start_inbox(DEPLOYMENT)
    async with server:
        script = "Ask for {{ name }} about {{ balance }}."
        await create_campaign(w, SCRIPTED.replace("{script}", script), AUDIENCE, rejected=1)
        assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 3
        conversation = await w.arrive(address="+12125550001", body="Call me tomorrow")
        await w.available("amy")
        assert await w.accept_offer("amy") == conversation

        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await expect(amy.locator("#campaign-script")).to_have_text("Ask for Jane about $120.00.")
        assert await violations(amy) == []

        tomorrow = dt.datetime.now(ZoneInfo("America/New_York")).date() + dt.timedelta(days=1)
        await amy.focus("#callback-at")
        await amy.fill("#callback-at", f"{tomorrow}T10:30")
        await amy.keyboard.press("Tab")
        await amy.keyboard.press("Enter")  # the form's button, by keyboard
        await expect(amy.locator(".done")).to_contain_text("Callback scheduled")

        await amy.click("text=Callbacks")
        row = amy.locator(f'tr[data-conversation="{conversation}"]')
        await expect(row).to_contain_text("10:30 (America/New_York)")
        await expect(row.locator(".callback-state")).to_have_text("Not yet")
        assert await violations(amy) == []

        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await amy.click("#do-not-call-form button")
        await expect(amy.locator(".done")).to_contain_text("no campaign will call it again")
        assert await w.store.redis.sismember(Keys("acme").do_not_contact, "+12125550001")
