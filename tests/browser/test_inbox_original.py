"""An agent opens a mail's original, headers and all, from the conversation, by keyboard,
in Chromium: the page is readable, escaped and has no serious accessibility violation."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from ops.redis_server import free_port
from router.settings import Settings
from tests.browser.test_accessibility import violations
from tests.browser.test_inbox import go_available, log_in
from tests.channels.test_email_inbound import Mailbox, mail
from tests.router.test_inbox_original import WITH_EMAIL
from tests.router.test_inbox_pages import cheap_hashes, start_inbox  # noqa: F401 - fixture
from workers import smtp


async def test_the_original_message_opens_from_the_conversation_by_keyboard(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    settings = Settings(attachment_dir=str(tmp_path), smtp_port=free_port())
    w, server = await start_inbox(WITH_EMAIL, settings)
    mx = await smtp.start(w.store, w.deployment, settings)
    try:
        async with server:
            amy = await log_in(browser, server, "amy")
            await go_available(amy)
            message = mail("My meter reads zero.\n\nJane", subject="Meter <b>zero</b>", Message_ID="<k1@example.com>")
            message["X-Mailer"] = "Evil <img src=x onerror=alert(1)>"
            mailbox = Mailbox(w, settings.smtp_port, None)  # type: ignore[arg-type]
            assert (await mailbox.send(message))[0] == 250
            await mailbox.route()
            conversation = await w.accept_offer("amy")
            await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
            link = amy.get_by_role("link", name="Original message")
            await link.focus()
            await amy.keyboard.press("Enter")
            await expect(amy.get_by_role("heading", name="Original message")).to_be_visible()
            raw = amy.locator("#raw")
            await expect(raw).to_contain_text("X-Mailer: Evil <img src=x onerror=alert(1)>")  # shown as text
            await expect(raw).to_contain_text("Message-ID: <k1@example.com>")
            assert await amy.locator("img[src=x]").count() == 0
            assert await violations(amy) == []
            await amy.screenshot(path=str(artifacts / "inbox-original-message.png"), full_page=True)
    finally:
        mx.close()
        await w.store.close()
