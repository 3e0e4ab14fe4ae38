"""The reports page in a real browser (Debian's chromium): a supervisor opens the known
day of tests/ops/test_reports.py's floor and sees its figures drawn as SVG charts,
under the inbox's strict CSP (no script runs on the page at all)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_inbox import TIMEOUT_MS, log_in
from tests.ops.test_reports import DAY, a_day_on_the_floor, clock  # noqa: F401 - fixture
from tests.router.test_inbox_pages import cheap_hashes  # noqa: F401 - fixture
from tests.router.test_inbox_reports import serving


async def test_a_supervisor_sees_the_days_charts(browser: Browser, artifacts: Path, clock) -> None:  # noqa: F811
    async with serving(await a_day_on_the_floor(clock)) as server:
        sue = await log_in(browser, server, "sue")
        errors: list[str] = []
        sue.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        await sue.click("header >> text=Reports")
        await sue.fill("input[name=date]", DAY.isoformat())
        await sue.click("#report-form button[type=submit]")
        await expect(sue.locator("#report")).to_be_visible(timeout=TIMEOUT_MS)

        volume = sue.locator("#chart-volume svg")
        await expect(volume).to_be_visible()
        offered = volume.locator('rect[data-category="support"][data-series="offered"]')
        assert await offered.get_attribute("data-value") == "5"
        assert await volume.locator("text.value").all_text_contents() == ["5", "3", "2", "1", "1", "0"]
        box = await offered.bounding_box()
        handled = await volume.locator('rect[data-category="support"][data-series="handled"]').bounding_box()
        assert box and handled and box["height"] / handled["height"] == pytest.approx(5 / 3, rel=0.01)  # to scale

        service = sue.locator("#chart-service svg")
        await expect(service.locator('g[data-label="support"] text.value')).to_have_text("20.0 %")
        await expect(service.locator('g[data-label="letters"] text.value')).to_have_text("100.0 %")
        await expect(service.locator("g.share-missed")).to_have_count(1)
        await expect(service.locator("line.target")).to_have_count(2)

        arrivals = sue.locator("#chart-arrivals svg")
        await expect(arrivals.locator("rect.bar")).to_have_count(24)
        await expect(arrivals.locator("text.value")).to_have_text(["6"])  # every contact came at 09:00
        await expect(sue.locator('#queues tr[data-queue="*"]')).to_contain_text("All queues")
        await sue.screenshot(path=str(artifacts / "reports.png"), full_page=True)
        assert errors == []  # nothing the CSP refused, nothing that failed to load
