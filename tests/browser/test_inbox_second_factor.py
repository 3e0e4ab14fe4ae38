"""The second factor in a real browser (Debian's chromium): a new supervisor is sent to
enrolment by policy, scans nothing but reads the secret off the page (as an app would read
the QR code), turns it on with a code pyotp computes here, keeps the recovery codes, and
logs in again with password and code; an admin lifts a stranger's lock on the desk."""

from __future__ import annotations

from pathlib import Path

import pyotp
from playwright.async_api import Browser, expect

from router.app.inbox import accounts, lockout, second_factor
from tests.browser.test_inbox import TIMEOUT_MS, log_in
from tests.router.test_inbox_pages import PASSWORD, SECRET, cheap_hashes, start_inbox, this_step  # noqa: F401


async def test_a_supervisor_enrols_a_second_factor_and_logs_in_with_a_code(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox()
    await accounts.add(w.store, "sam", PASSWORD, "supervisor", {"acme": ""})
    async with server:
        page = await (await browser.new_context()).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        await page.goto(str(server.make_url("/inbox/login")))
        await page.fill("input[name=login]", "sam")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(str(server.make_url("/inbox/second-factor")))
        await expect(page.locator("#second-factor-required")).to_be_visible()
        qr = page.locator("#second-factor-qr")
        await expect(qr).to_be_visible()
        assert await qr.evaluate("image => image.complete && image.naturalWidth > 0")  # the SVG drew
        await page.screenshot(path=str(artifacts / "second-factor-enrol.png"), full_page=True)

        await page.goto(str(server.make_url("/inbox/floor")))  # nothing else until enrolled
        await expect(page).to_have_url(str(server.make_url("/inbox/second-factor")))
        secret = (await page.locator("#second-factor-secret").text_content() or "").replace(" ", "")
        totp, enrolled = pyotp.TOTP(secret), this_step()
        await page.fill("#enrol-form input[name=code]", totp.generate_otp(enrolled))
        await page.press("#enrol-form input[name=code]", "Enter")  # the keyboard is enough
        codes = page.locator("#recovery-codes code")
        await expect(codes).to_have_count(second_factor.RECOVERY_CODES)
        await page.screenshot(path=str(artifacts / "second-factor-recovery-codes.png"), full_page=True)
        await page.click("#continue")
        await expect(page).to_have_url(str(server.make_url("/inbox/floor")))
        await expect(page.locator('section[data-tenant="acme"]')).to_be_visible()

        await page.click("header button:has-text('Log out')")
        await expect(page).to_have_url(str(server.make_url("/inbox/login")))
        await page.fill("input[name=login]", "sam")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(str(server.make_url("/inbox/login/code")))
        await page.fill("input[name=code]", totp.generate_otp(enrolled))  # the code used to enrol: refused
        await page.click("#code-form button[type=submit]")
        await expect(page.locator(".error")).to_have_text(
            "That code is not right. Enter the current code from your app, or a recovery code."
        )
        await page.fill("input[name=code]", totp.generate_otp(enrolled + 1))  # the next step's
        await page.click("#code-form button[type=submit]")
        await expect(page).to_have_url(str(server.make_url("/inbox/floor")))
        await page.goto(str(server.make_url("/inbox/second-factor")))
        await expect(page.locator("#second-factor-on")).to_contain_text("10 unused recovery codes")
        assert [e for e in errors if "Content Security Policy" in e] == []  # the QR code is no inline script


async def test_an_admin_lifts_a_strangers_lock_on_the_desk(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox()
    await accounts.add(w.store, "root", PASSWORD, "admin", {})
    await second_factor.activate(w.store, "root", SECRET)
    for _ in range(accounts.MAX_FAILURES):
        try:
            await accounts.authenticate(w.store, "amy", "a stranger's guess", client="198.51.100.9")
        except accounts.LoginFailed:
            pass
    async with server:
        root = await log_in(browser, server, "root")
        await root.click("header >> text=Locks")
        row = root.locator('#locks tr[data-name="amy"]')
        await expect(row).to_contain_text("198.51.100.9")
        await expect(row).to_contain_text("locked from one address")
        await root.screenshot(path=str(artifacts / "locks.png"), full_page=True)
        await row.get_by_role("button", name="Unlock amy").click()
        await expect(root.locator(".done")).to_have_text("Lock lifted.")
        await expect(root.locator("#no-locks")).to_be_visible()
    assert await lockout.in_force(w.store) == []
