"""The browser harness itself: chromium renders a page the web process serves."""

from __future__ import annotations

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from router.app import web
from router.settings import Settings
from tests.factories import world


async def test_chromium_reads_the_web_process_health_page(browser: Browser) -> None:
    w = await world()
    async with TestServer(web.application(w.store, w.deployment, Settings())) as server:
        page = await browser.new_page()
        response = await page.goto(str(server.make_url("/healthz")))
        assert response is not None and response.status == 200
        assert "alive" in await page.inner_text("body")
