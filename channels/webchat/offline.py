"""The widget's "offline, leave your email" form: POST /webchat/{tenant}/offline.

Shown after hours or when the chat's socket cannot be reached. The message becomes
an email contact from the address the visitor left, so the agent's reply goes out
by email; the address is unverified, and the contact says so. The form's own id is
the provider id: a resubmitted form adds nothing twice.
"""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web
from redis.exceptions import RedisError

from channels.webchat import limits, origins
from channels.webchat._runtime import client_ip
from channels.webchat.socket import CLIENT_ID
from router import bus, events
from router.appkeys import STORE

log = logging.getLogger(__name__)

PATH = "/webchat/{tenant}/offline"
EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,63}")
MAX_REQUEST_BYTES = 64 * 1024


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, leave_message)
    app.router.add_route("OPTIONS", PATH, origins.preflight)


def _refuse(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
    return web.json_response({"ok": False, "code": code, "message": message}, status=status, headers=headers)


async def leave_message(request: web.Request) -> web.Response:
    tenant, webchat, headers = origins.allowed_post(request, "offline form of")
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return _refuse(413, "too_large", "the form is too large", headers)
    try:
        form = json.loads(await request.content.read(MAX_REQUEST_BYTES + 1))
    except ValueError:
        return _refuse(400, "bad_request", "the form must be JSON", headers)
    if not isinstance(form, dict):
        return _refuse(400, "bad_request", "the form must be a JSON object", headers)
    form_id, email = form.get("id"), form.get("email")
    name, body = form.get("name") or "", form.get("message")
    if not isinstance(form_id, str) or not CLIENT_ID.fullmatch(form_id):
        return _refuse(400, "bad_request", "the form needs an id", headers)
    if not isinstance(email, str) or not EMAIL.fullmatch(email.strip()):
        return _refuse(400, "bad_email", "please give a valid email address", headers)
    if not isinstance(body, str) or not body.strip():
        return _refuse(400, "empty", "please write a message", headers)
    if len(body.encode()) > webchat.limits.message_bytes:
        return _refuse(413, "too_large", f"the message is over {webchat.limits.message_bytes} bytes", headers)
    name = name.strip()[:100] if isinstance(name, str) else ""
    store = request.app[STORE]
    try:
        retry = await limits.take(store, tenant.id, [("ip", client_ip(request), webchat.limits.per_ip_per_minute)])
        if retry:
            headers = {**headers, "Retry-After": str(retry)}
            return _refuse(429, "rate_limited", "too many messages; please wait a minute", headers)
        contact = events.InboundContact(
            id=events.new_id(),
            tenant=tenant.id,
            channel="email",
            address=email.strip(),
            name=name,
            provider_id=f"webchat-offline:{form_id}",
            occurred_at=events.now_ms(),
            subject=f"Web chat message from {name}" if name else "Web chat message",
            body=body,
            queue=tenant.entry_queue("webchat"),
            metadata={"source": "webchat-offline", "name": name, "email_verified": "no"},
        )
        added, _entry = await bus.ingest(store, contact)
    except (RedisError, OSError):
        log.exception("offline message for %s not stored", tenant.id)
        return _refuse(503, "unavailable", "not sent; please try again", headers)
    return web.json_response({"ok": True, "duplicate": not added}, headers=headers)
