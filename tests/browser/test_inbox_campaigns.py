"""Campaigns in a real browser (Debian's chromium): a supervisor watches a campaign's
progress move without a reload, pauses it from its page, and sees it resumed from the CLI."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from router.campaigns import registry
from tests.browser.test_inbox import TIMEOUT_MS, log_in
from tests.router.test_inbox_campaigns import AUDIENCE, DEPLOYMENT, DUES, worker
from tests.router.test_inbox_pages import cheap_hashes, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import create_campaign


async def test_a_supervisor_watches_a_campaign_live_and_pauses_it(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox(DEPLOYMENT)
    async with server:
        await create_campaign(w, DUES, AUDIENCE, rejected=1)
        sue = await log_in(browser, server, "sue")
        problems: list[str] = []  # a CSP refusal or a script error shows up here
        sue.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        sue.on("pageerror", lambda e: problems.append(str(e)))

        await sue.click("header a[href='/inbox/campaigns']")
        row = sue.locator('tr.campaign[data-campaign="dues"]')
        await expect(row.locator(".state")).to_have_text("running")
        await expect(row.locator('[data-count="queued"]')).to_have_text("3")
        assert await worker(w).step() == 3
        await expect(row.locator('[data-count="sent"]')).to_have_text("3", timeout=TIMEOUT_MS)  # polled, no reload
        await expect(row.locator('[data-count="queued"]')).to_have_text("0")
        await expect(row.locator(".percent")).to_have_text("100 %")

        await row.locator("a").click()
        await expect(sue.locator("h1")).to_contain_text("June <dues>")  # the name, as text
        await expect(sue.locator("#preview .preview-message").first).to_contain_text("<script>alert('offer')</script>")
        await expect(sue.locator("#campaign-resume")).to_be_hidden()
        await sue.click("#campaign-pause")
        await expect(sue.locator(".done")).to_have_text("Campaign paused.")
        await expect(sue.locator("#campaign-state")).to_have_text("paused")
        await expect(sue.locator("#campaign-pause")).to_be_hidden()
        await expect(sue.locator("#campaign-resume")).to_be_visible()
        assert (await registry.load(w.store, "acme", "dues"))[1] == "paused"
        await sue.screenshot(path=str(artifacts / "campaigns.png"), full_page=True)

        await registry.change(w.store, "acme", "dues", "resume")  # as `contactrouter campaign resume` does
        await expect(sue.locator("#campaign-state")).to_have_text("running", timeout=TIMEOUT_MS)
        await expect(sue.locator("#campaign-pause")).to_be_visible()
        await expect(sue.locator("#campaign-resume")).to_be_hidden()
        assert problems == []
