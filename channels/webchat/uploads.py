"""Visitors' images and files: POST /webchat/{tenant}/upload (multipart).

Fields, in this order: token (the visitor's), id (the tab's id for the message),
text (an optional caption), file. The type is what the bytes are, never what the
browser claims (router/files.py: the first bytes, and an image must open); only
the tenant's allowed types and sizes are kept. A kept file is stored by content
(the attachment store) and becomes a web chat message, added once per id.
"""

from __future__ import annotations

import logging

from aiohttp import BodyPartReader, web
from redis.exceptions import RedisError

from channels.webchat import identity, limits, origins
from channels.webchat._runtime import RUNTIME, client_ip, is_open
from channels.webchat.inbound import deliver
from channels.webchat.socket import CLIENT_ID
from router import events
from router.appkeys import STORE
from router.files import allowed_names, checked_type, read_capped, safe_filename
from router.keys import Keys

log = logging.getLogger(__name__)

PATH = "/webchat/{tenant}/upload"


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, upload)
    app.router.add_route("OPTIONS", PATH, origins.preflight)


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
