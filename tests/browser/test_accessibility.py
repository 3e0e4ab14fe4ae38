"""Accessibility: axe-core (vendored from npm by `python -m ops.vendor`) run in Chromium on
the desk (home, a conversation with its list and customer panel), the floor, the login
and the web chat widget, open: no serious or critical violation."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from router.app.inbox import accounts
from tests.browser.test_inbox import go_available, log_in
from tests.browser.test_webchat import acme, open_widget, running
from tests.factories import world
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes, start_inbox  # noqa: F401 - fixture

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text("utf-8")
BLOCKING = ("serious", "critical")


async def violations(page: Page) -> list[str]:
    """axe's serious and critical findings on the page as it is now, one line each."""
    await page.evaluate(AXE)  # through the debugger protocol: the page's own policy allows no inline script
    result = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(n['target'][0] for n in v['nodes'][:3])}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


async def test_the_desk_floor_and_login_have_no_serious_accessibility_violation(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        login = await (await browser.new_context()).new_page()
        await login.goto(str(server.make_url("/inbox/login")))
        assert await violations(login) == []

        amy = await log_in(browser, server, "amy")
        await go_available(amy)
        conversation = await w.arrive(address="+15551230000", body="My meter reads zero")
        await w.accept_offer("amy")
        await w.arrive(address="+15551230001", body="And mine")  # an offer waiting on the home page
        await amy.goto(str(server.make_url("/inbox")))
        await expect(amy.locator(".offer")).to_have_count(1)
        assert await violations(amy) == []
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await expect(amy.locator("#customer-panel")).to_be_visible()
        assert await violations(amy) == []

        sue = await log_in(browser, server, "sue")
        await sue.goto(str(server.make_url("/inbox/floor")))
        await expect(sue.locator('section[data-tenant="acme"]')).to_be_visible()
        assert await violations(sue) == []


async def test_the_web_chat_widget_open_has_no_serious_accessibility_violation(browser: Browser) -> None:
    w = await world(acme(webchat='prechat = ["name"]'))
    await accounts.add(w.store, "alice", PASSWORD, "agent", {"acme": "alice"})
    async with running(w) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        assert await violations(page) == []


async def test_the_check_finds_what_it_is_for(browser: Browser) -> None:
    page = await browser.new_page()
    await page.set_content('<html lang="en"><title>t</title><main><img src="data:,"><button></button></main></html>')
    found = await violations(page)
    assert any("image-alt" in line for line in found) and any("button-name" in line for line in found)


async def test_the_search_and_a_custom_range_report_have_no_serious_accessibility_violation(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to("amy", address="+15551230000", body="My meter reads zero")
        sue = await log_in(browser, server, "sue")
        await sue.goto(str(server.make_url("/inbox/search")))
        await sue.select_option("select[name=agent]", "amy")
        await sue.click("#search-form button[type=submit]")
        await expect(sue.locator(f'tr[data-conversation="{conversation}"]')).to_be_visible()
        await expect(sue.locator("#total")).to_have_text("1 conversation")
        assert await violations(sue) == []

        await sue.goto(str(server.make_url("/inbox/reports")))
        await sue.select_option("select[name=period]", "range")
        await sue.fill("input[name=date]", "2026-11-01")
        await sue.fill("input[name=until]", "2026-11-07")
        await sue.click("#report-form button[type=submit]")
        await expect(sue.locator("#report")).to_be_visible()
        assert await violations(sue) == []
