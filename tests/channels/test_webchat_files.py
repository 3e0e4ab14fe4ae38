"""Files in a chat back to the visitor: a link signed for that visitor and tenant,
short-lived; anything else (another tenant, a changed link, an old one) is a 404."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp.test_utils import TestClient

from channels.webchat import files, signals
from channels.webchat._runtime import RUNTIME
from router import conversations, events
from router.attachments import AttachmentStore
from router.settings import Settings
from tests.channels.test_webchat_socket import (
    KEYS,
    SHOP,
    chat_server,
    chat_world,
    dispatch_all,
    frame,
    open_chat,
    route_all,
)
from tests.channels.test_webchat_uploads import form, png
from tests.factories import World


async def _uploaded_link(client: TestClient) -> tuple[str, str]:
    """A visitor sends a picture; returns (their token, the link their tab is shown)."""
    ws, welcome = await open_chat(client)
    response = await client.post("/webchat/acme/upload", data=form(welcome["token"], png()), headers={"Origin": SHOP})
    assert response.status == 200
    [file] = (await frame(ws, "message"))["files"]
    await ws.close()
    return welcome["token"], file["link"]


async def test_a_visitor_downloads_their_own_upload_by_its_signed_link(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        token, link = await _uploaded_link(client)
        response = await client.get(f"/webchat/acme/files/{link}")
        assert response.status == 200 and await response.read() == png()
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Content-Security-Policy"].startswith("sandbox")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        # the replayed history (a reload) links the file again, freshly signed
        ws, welcome = await open_chat(client, token=token)
        [item] = welcome["history"]
        assert (await client.get(f"/webchat/acme/files/{item['files'][0]['link']}")).status == 200
        # and a tab open longer than a link lives asks for fresh ones
        await ws.send_json({"type": "links"})
        [fresh] = (await frame(ws, "links"))["items"]
        assert fresh["id"] == item["id"] and "ref" not in fresh["files"][0]
        assert (await client.get(f"/webchat/acme/files/{fresh['files'][0]['link']}")).status == 200


async def test_a_link_works_for_no_other_tenant_file_or_visitor_and_not_for_long(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        _token, link = await _uploaded_link(client)
        secret = client.app[RUNTIME].secret
        assert (await client.get(f"/webchat/globex/files/{link}")).status == 404
        claims = files.verify_link(secret, "acme", link)
        assert claims is not None
        other = AttachmentStore(tmp_path).put_sync(b"%PDF-1.4 someone else's invoice")
        payload, _, mac = link.partition(".")
        forged = files.sign_link("another secret", "acme", claims["v"], other, "application/pdf", "x.pdf")
        spliced = forged.partition(".")[0] + "." + mac  # another file under this link's signature
        old = files.sign_link(secret, "acme", claims["v"], claims["r"], "image/png", "a.png", now=time.time() - 3700)
        for bad in (forged, spliced, old, payload + "." + mac[:-2] + "AA", "nothing"):
            response = await client.get(f"/webchat/acme/files/{bad}")
            assert response.status == 404, bad
        # a link signed for another visitor names that visitor's file only: never this one's by guessing
        assert files.verify_link(secret, "globex", link) is None


async def _agent_reply_with_file(w: World, tmp_path: Path, data: bytes, content_type: str) -> None:
    ref = AttachmentStore(tmp_path).put_sync(data)
    conversation = await signals.open_conversation(w.store, "acme", await _visitor(w))
    record = await conversations.get(w.store, "acme", conversation)
    await w.store.redis.hset(KEYS.conversation(record["id"]), mapping={"agent": "amy", "state": "assigned"})
    attachment = events.Attachment(url=ref, content_type=content_type, filename="bill.pdf", size=len(data))
    await conversations.send_reply(w.store, "acme", record["id"], "amy", "Here it is", attachments=(attachment,))
    await dispatch_all(w)


async def _visitor(w: World) -> str:
    [contact] = [events.decode_inbound(f[b"e"]) for _i, f in await w.store.redis.xrange(KEYS.inbound)]
    return contact.address


async def test_an_agents_file_reaches_the_visitors_tab_as_a_link(tmp_path: Path) -> None:
    w = await chat_world()
    async with chat_server(w, Settings(attachment_dir=str(tmp_path))) as client:
        ws, _welcome = await open_chat(client)
        await ws.send_json({"type": "message", "id": "hello-000001", "text": "My bill please"})
        await frame(ws, "ack")
        await route_all(w)
        pdf = b"%PDF-1.4 the bill"
        await _agent_reply_with_file(w, tmp_path, pdf, "application/pdf")
        item = await frame(ws, "message")
        while item["kind"] != "out":
            item = await frame(ws, "message")
        [file] = item["files"]
        assert file["name"] == "bill.pdf" and "ref" not in file
        response = await client.get(f"/webchat/acme/files/{file['link']}")
        assert response.status == 200 and await response.read() == pdf
        assert response.headers["Content-Disposition"].startswith("inline")
