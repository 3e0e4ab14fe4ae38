"""Visitors' uploads: the bytes decide the type, the tenant's limits decide what is kept."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from aiohttp import FormData
from PIL import Image

from router.attachments import AttachmentStore
from router.settings import Settings
from tests.channels.test_webchat_socket import SHOP, chat_server, chat_world, frame, inbound, open_chat


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "orange").save(buffer, "PNG")
    return buffer.getvalue()


def form(token: str, data: bytes, filename: str = "meter.png", client_id: str = "upload-000001") -> FormData:
    body = FormData()
    body.add_field("token", token)
    body.add_field("id", client_id)
    body.add_field("file", data, filename=filename, content_type="image/png")  # what a browser claims
    return body


async def test_an_image_becomes_a_chat_message_with_the_file_in_the_attachment_store(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        ws, welcome = await open_chat(client)
        for _ in range(2):  # the second is a resend of the same id: one message
            response = await client.post(
                "/webchat/acme/upload",
                data=form(welcome["token"], png(), "..\\..\\etc\\meter\u202egnp.png"),
                headers={"Origin": SHOP},
            )
            assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == SHOP
        shown = await frame(ws, "message")
        [file] = shown["files"]
        assert {k: file[k] for k in ("name", "content_type", "size")} == {
            "name": "metergnp.png",
            "content_type": "image/png",
            "size": len(png()),
        }
        assert "ref" not in file and file["link"]  # a signed link, never the store's reference
    [contact] = await inbound(w)
    [attachment] = contact.attachments
    assert (attachment.content_type, attachment.filename) == ("image/png", "metergnp.png")
    assert AttachmentStore(tmp_path).read(attachment.url) == png()


async def test_bytes_that_are_not_an_allowed_type_are_refused_whatever_the_browser_claims(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        _ws, welcome = await open_chat(client)
        for data in (b"<html><script>alert(1)</script></html>", b"\x89PNG\r\n\x1a\n" + b"not really an image"):
            response = await client.post(
                "/webchat/acme/upload", data=form(welcome["token"], data), headers={"Origin": SHOP}
            )
            assert response.status == 415
            assert (await response.json())["code"] == "bad_type"
    assert await inbound(w) == []
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob("*"))) == []  # nothing was stored


async def test_an_upload_over_the_tenants_size_limit_is_refused(tmp_path: Path) -> None:
    w = await chat_world(limits="upload_max_bytes = 64")
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        _ws, welcome = await open_chat(client)
        response = await client.post(
            "/webchat/acme/upload", data=form(welcome["token"], png()), headers={"Origin": SHOP}
        )
        assert response.status == 413 and (await response.json())["code"] == "too_large"
    assert await inbound(w) == []


async def test_an_upload_needs_the_visitors_token_and_an_allowed_page(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        _ws, welcome = await open_chat(client)
        forged = await client.post(
            "/webchat/acme/upload", data=form("x" + welcome["token"], png()), headers={"Origin": SHOP}
        )
        assert forged.status == 401
        elsewhere = await client.post(
            "/webchat/acme/upload", data=form(welcome["token"], png()), headers={"Origin": "https://evil.example"}
        )
        assert elsewhere.status == 403 and "Access-Control-Allow-Origin" not in elsewhere.headers
    assert await inbound(w) == []
