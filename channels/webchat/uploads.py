"""Visitors' images and files: POST /webchat/{tenant}/upload (multipart).

Fields, in this order: token (the visitor's), id (the tab's id for the message),
text (an optional caption), file. The type is what the bytes are, never what the
browser claims: the first bytes are sniffed and images are opened with Pillow; only
the tenant's allowed types and sizes are kept. A kept file is stored by content
(the attachment store) and becomes a web chat message, added once per id.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from PIL import Image, UnidentifiedImageError
from redis.exceptions import RedisError

from channels.webchat import identity, limits, origins
from channels.webchat._runtime import RUNTIME, client_ip, is_open
from channels.webchat.inbound import deliver
from channels.webchat.socket import CLIENT_ID
from router import events
from router.appkeys import STORE
from router.keys import Keys

log = logging.getLogger(__name__)

PATH = "/webchat/{tenant}/upload"
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, upload)
    app.router.add_route("OPTIONS", PATH, origins.preflight)


def sniff(data: bytes) -> str:
    """The type the bytes are (by their signature), or "" when unknown."""
    for signature, content_type in SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def checked_type(data: bytes, allowed: Sequence[str]) -> str:
    """The type the bytes are, if it is one of `allowed` (an image must also open as one);
    "" when refused. The agents' inbox checks its files with this too."""
    content_type = sniff(data)
    if content_type not in allowed or (content_type.startswith("image/") and not _is_image(data)):
        return ""
    return content_type


def allowed_names(allowed: Sequence[str]) -> str:
    return ", ".join(t.split("/")[1].upper() for t in allowed)


async def read_capped(part: BodyPartReader, cap: int) -> bytes | None:
    """A multipart file part's bytes, read no further than one byte past `cap`: None when over it."""
    data = await part.read_chunk(cap + 1)
    while len(data) <= cap and (chunk := await part.read_chunk(cap + 1 - len(data))):
        data += chunk
    return None if len(data) > cap else data


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def safe_filename(name: str | None) -> str:
    """A display name: the last path part, control and direction characters dropped, 120
    characters at most. Browsers percent-encode quotes and line breaks in it; so do clients."""
    name = re.split(r"[\\/]", unquote(name or ""))[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:120] or "file"


async def upload(request: web.Request) -> web.Response:
    tenant, webchat, headers = origins.allowed_post(request, "upload to")

    def refuse(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"ok": False, "code": code, "message": message}, status=status, headers=headers)

    runtime, store = request.app[RUNTIME], request.app[STORE]
    cap = min(webchat.limits.upload_max_bytes, runtime.attachments.max_bytes)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        return refuse(400, "bad_request", "send the file as multipart/form-data")
    fields: dict[str, str] = {}
    data, filename = b"", ""
    while (part := await reader.next()) is not None:
        if part.name == "file" and isinstance(part, BodyPartReader):
            filename = safe_filename(part.filename)
            read = await read_capped(part, cap)
            if read is None:
                return refuse(413, "too_large", f"files may be at most {cap // 1024} kB")
            data = read
            break
        if part.name in ("token", "id", "text"):
            fields[part.name] = (await part.read(decode=False))[:16384].decode("utf-8", "replace")  # type: ignore[union-attr]
    try:
        visitor = identity.verify_token(runtime.secret, tenant.id, fields.get("token", ""))
    except identity.Refused as refused:
        return refuse(401, refused.code, str(refused))
    client_id, caption = fields.get("id", ""), fields.get("text", "").strip()
    if not CLIENT_ID.fullmatch(client_id):
        return refuse(400, "bad_request", "the upload needs an id")
    if not data:
        return refuse(400, "empty", "no file was sent")
    if len(caption.encode()) > webchat.limits.message_bytes:
        return refuse(413, "too_large", f"the caption is over {webchat.limits.message_bytes} bytes")
    content_type = checked_type(data, webchat.limits.upload_types)
    if not content_type:
        allowed = allowed_names(webchat.limits.upload_types)
        return refuse(415, "bad_type", f"this kind of file cannot be sent here (allowed: {allowed})")
    try:
        state = await store.redis.hgetall(Keys(tenant.id).webchat_visitor(visitor))
        if webchat.prechat and not state.get(b"prechat"):
            return refuse(409, "prechat_required", "please answer the questions first")
        if not is_open(tenant):
            return refuse(409, "closed", webchat.offline_message)
        quotas = [
            ("visitor", visitor, webchat.limits.per_visitor_per_minute),
            ("ip", client_ip(request), webchat.limits.per_ip_per_minute),
        ]
        retry = await limits.take(store, tenant.id, quotas)
        if retry:
            return refuse(429, "rate_limited", "you are sending too fast")
        ref = await runtime.attachments.put(data)
        attachment = events.Attachment(url=ref, content_type=content_type, filename=filename, size=len(data))
        duplicate = await deliver(store, tenant, visitor, client_id, caption, state, attachments=(attachment,))
    except (RedisError, OSError):
        log.exception("upload for %s not stored", tenant.id)
        return refuse(503, "unavailable", "not sent; please try again")
    return web.json_response({"ok": True, "id": client_id, "duplicate": duplicate}, headers=headers)
