"""The original of a customer's mail, headers and all, viewable in the desk: escaped,
behind the login, only under its own conversation. The mail comes over real SMTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.redis_server import free_port
from router.attachments import AttachmentStore
from router.settings import Settings
from tests.channels.test_email_inbound import Mailbox, mail
from tests.router.test_inbox_pages import DEPLOYMENT, Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401
from workers import smtp

WITH_EMAIL = DEPLOYMENT.replace(
    '\n[[tenants]]\nid = "globex"',
    """
[tenants.email]
addresses = ["help@acme.example"]

[[tenants]]
id = "globex\"""",
)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[tuple[Inbox, Mailbox]]:
    settings = Settings(attachment_dir=str(tmp_path), smtp_port=free_port(), attachment_max_bytes=50_000)
    w, server = await start_inbox(WITH_EMAIL, settings)
    mx = await smtp.start(w.store, w.deployment, settings)
    try:
        async with server:
            yield Inbox(w, server), Mailbox(w, settings.smtp_port, AttachmentStore(tmp_path))
    finally:
        mx.close()


async def mailed_to_amy(inbox: Inbox, mailbox: Mailbox, message) -> str:
    await inbox.world.available("amy")
    assert (await mailbox.send(message))[0] == 250
    await mailbox.route()
    return await inbox.world.accept_offer("amy")


async def test_the_original_message_is_shown_with_its_headers_escaped(desk: tuple[Inbox, Mailbox]) -> None:
    inbox, mailbox = desk
    message = mail("Hello <b>team</b>", subject="<script>alert(1)</script>", Message_ID="<o1@example.com>")
    message["X-Mailer"] = "Evil <img src=x onerror=alert(2)>"
    conversation = await mailed_to_amy(inbox, mailbox, message)
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        href = re.search(rf'href="(/inbox/t/acme/c/{conversation}/original/[^"]+)">Original message<', page).group(1)
        response = await client.get(href)
        assert response.status == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
        shown = await response.text()
        raw = re.search(r'<pre id="raw"[^>]*>(.*?)</pre>', shown, re.S).group(1)
        assert "Message-ID: &lt;o1@example.com&gt;" in raw and "From: Jane Doe &lt;jane@example.com&gt;" in raw
        assert "Subject: &lt;script&gt;alert(1)&lt;/script&gt;" in raw
        assert "X-Mailer: Evil &lt;img src=x onerror=alert(2)&gt;" in raw
        assert "<script>alert(1)" not in shown and "<img src=x" not in shown
        # and it downloads as it came, never shown as a page of ours
        download = re.search(r'href="([^"]+/files/[0-9a-f]{64})" download', shown).group(1)
        eml = await client.get(download)
        assert eml.headers["Content-Disposition"] == "attachment"
        assert eml.headers["Content-Type"] == "application/octet-stream"
        assert b"Message-ID: <o1@example.com>" in await eml.read()


async def test_the_original_is_behind_the_login_and_only_under_its_own_conversation(
    desk: tuple[Inbox, Mailbox],
) -> None:
    inbox, mailbox = desk
    conversation = await mailed_to_amy(inbox, mailbox, mail("Private", Message_ID="<o2@example.com>"))
    [contact] = await mailbox.contacts()
    path = f"/inbox/t/acme/c/{conversation}/original/{contact.id}"
    async with inbox.client() as anonymous:
        assert (await anonymous.get(path, allow_redirects=False)).status in (302, 401)
    other = await inbox.world.arrive(channel="sms", address="+15559990000", body="hi")
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        assert (await client.get(path)).status == 200
        assert (await client.get(f"/inbox/t/acme/c/{other}/original/{contact.id}")).status == 404
    gus, _csrf = await logged_in(inbox, "gus")  # another tenant's agent
    async with gus:
        assert (await gus.get(path, allow_redirects=False)).status in (403, 404)


async def test_a_message_too_big_to_keep_is_noted_and_has_no_original_link(desk: tuple[Inbox, Mailbox]) -> None:
    inbox, mailbox = desk
    big = mail("x" * 60_000, Message_ID="<o3@example.com>")  # over this store's 50 kB cap
    conversation = await mailed_to_amy(inbox, mailbox, big)
    [contact] = await mailbox.contacts()
    assert contact.metadata.get("raw_omitted") == "1" and "raw" not in contact.metadata
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Original message" not in page
