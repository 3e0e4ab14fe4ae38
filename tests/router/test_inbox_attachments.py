"""An agent attaches a file to a web chat or email reply: the bytes decide the type, the
channel's limits decide what goes, and the reply carries it from the attachment store."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData
from PIL import Image

from router import events
from router.attachments import AttachmentStore
from router.settings import Settings
from tests.router.test_inbox_pages import DEPLOYMENT, Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401

WITH_CHAT = DEPLOYMENT.replace(
    '\n[[tenants]]\nid = "globex"',
    """
[tenants.webchat]
allowed_origins = ["https://shop.acme.example"]

[tenants.webchat.limits]
upload_max_bytes = 4096

[[tenants]]
id = "globex\"""",
)
VISITOR = "v-" + "ab" * 16


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), "teal").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    w, server = await start_inbox(WITH_CHAT, Settings(attachment_dir=str(tmp_path)))
    async with server:
        yield Inbox(w, server)


async def chat_held_by_amy(inbox: Inbox) -> str:
    return await inbox.world.assigned_to("amy", channel="webchat", address=VISITOR, body="can you send the form?")


def reply_form(csrf: str, data: bytes, *, body: str = "Here you are", filename: str = "form.png") -> FormData:
    form = FormData()
    form.add_field("csrf", csrf)  # first, as the page's form has it
    form.add_field("key", events.new_id())
    form.add_field("body", body)
    form.add_field("file", data, filename=filename, content_type="image/png")
    return form


async def test_an_agents_file_goes_with_the_reply_from_the_attachment_store(inbox: Inbox, tmp_path: Path) -> None:
    conversation = await chat_held_by_amy(inbox)
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        page = await client.get(f"/inbox/t/acme/c/{conversation}")
        assert 'enctype="multipart/form-data"' in await page.text() and 'name="file"' in await page.text()
        response = await client.post(
            f"/inbox/t/acme/c/{conversation}/reply", data=reply_form(csrf, png(), filename="../a\u202eform.png")
        )
        assert response.status == 200 and "Reply sent." in await response.text()
        [message] = await inbox.world.outgoing()
        [attachment] = message.attachments
        assert (message.channel, message.to, message.body) == ("webchat", VISITOR, "Here you are")
        assert (attachment.content_type, attachment.filename, attachment.size) == ("image/png", "aform.png", len(png()))
        assert AttachmentStore(tmp_path).read(attachment.url) == png()
        digest = attachment.url.removeprefix("store:")
        assert f"/inbox/t/acme/c/{conversation}/files/{digest}" in await response.text()  # in the history
        shown = await client.get(f"/inbox/t/acme/c/{conversation}/files/{digest}")
        assert shown.status == 200 and await shown.read() == png()


async def test_a_file_that_is_not_an_allowed_type_or_too_large_is_refused(inbox: Inbox, tmp_path: Path) -> None:
    conversation = await chat_held_by_amy(inbox)
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        for data, why in (
            (b"<html><script>alert(1)</script></html>", "cannot be sent"),
            (b"\x89PNG\r\n\x1a\n" + b"\0" * 5000, "at most 4 kB"),
        ):
            response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=reply_form(csrf, data))
            assert response.status == 409 and why in await response.text()
    assert await inbox.world.outgoing() == []
    assert await asyncio.to_thread(lambda: [p for p in tmp_path.rglob("*") if p.is_file()]) == []


async def test_a_file_goes_only_to_web_chat_or_email_and_a_multipart_post_needs_its_csrf_first(inbox: Inbox) -> None:
    conversation = await chat_held_by_amy(inbox)
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        form = reply_form(csrf, png())
        form.add_field("to", "sms|+15551230000")
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=form)
        assert response.status == 409 and "web chat and email replies only" in await response.text()
        late = FormData()
        late.add_field("body", "hello")
        late.add_field("csrf", csrf)
        late.add_field("file", png(), filename="x.png", content_type="image/png")
        assert (await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=late)).status == 403
    assert await inbox.world.outgoing() == []


async def test_a_multipart_reply_without_a_file_is_text_only(inbox: Inbox) -> None:
    conversation = await chat_held_by_amy(inbox)
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        form = reply_form(csrf, b"", filename="")  # what a browser sends when no file was chosen
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=form)
        assert "Reply sent." in await response.text()
    [message] = await inbox.world.outgoing()
    assert (message.body, message.attachments) == ("Here you are", ())


async def test_an_email_reply_carries_a_pdf_and_the_page_shows_a_customers_picture_inline(
    inbox: Inbox, tmp_path: Path
) -> None:
    store = AttachmentStore(tmp_path)
    picture = await store.put(png())
    attached = events.Attachment(url=picture, content_type="image/png", filename="meter.png", size=len(png()))
    conversation = await inbox.world.assigned_to(
        "amy", channel="email", address="ana@example.com", body="my meter", attachments=(attached,)
    )
    pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        href = f"/inbox/t/acme/c/{conversation}/files/{picture.removeprefix('store:')}"
        assert f'<img\n              src="{href}" alt="meter.png"' in page  # a picture, not only a link
        live = await (await client.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json()
        [file] = live["entries"][0]["attachments"]
        assert (file["href"], file["is_image"]) == (href, True)  # live too, without a reload

        form = FormData()
        form.add_field("csrf", csrf)
        form.add_field("key", events.new_id())
        form.add_field("body", "The contract is attached.")
        form.add_field("to", "email|ana@example.com")
        form.add_field("file", pdf, filename="contract.pdf", content_type="application/pdf")
        response = await client.post(f"/inbox/t/acme/c/{conversation}/reply", data=form)
        assert "Reply sent." in await response.text()
    [message] = await inbox.world.outgoing()
    [attachment] = message.attachments
    assert (message.channel, message.to) == ("email", "ana@example.com")
    assert (attachment.content_type, attachment.filename) == ("application/pdf", "contract.pdf")
    assert store.read(attachment.url) == pdf
