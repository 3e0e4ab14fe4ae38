"""A file an agent attaches to a reply (a multipart reply form), in a web chat or an email.

The checks are the web chat uploads' own (channels.webchat.uploads): the type is
what the bytes are, one of the channel's types, within its size, read as a stream and
never further than one byte past the limit. A web chat takes the tenant's `upload_types`
and `upload_max_bytes`; an email takes pictures and PDFs up to EMAIL_MAX_BYTES (mail
servers commonly refuse messages over 10-25 MB, and base64 adds a third). A kept file goes
into the attachment store and rides on the reply as a "store:<sha256>" attachment, which
the web chat sender shows the visitor as a link or an image and the email sender attaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from router import events
from router.agents import AgentError
from router.app.inbox.rendering import MAX_TEXT
from router.app.inbox.sessions import MULTIPART
from router.appkeys import SETTINGS
from router.attachments import AttachmentStore
from router.config import Tenant
from router.files import allowed_names, checked_type, read_capped, safe_filename

EMAIL_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")
EMAIL_MAX_BYTES = 7 * 1024 * 1024  # about 10 MB once base64-encoded in the mail


@dataclass
class ReplyForm:
    """A reply form's text fields and the file it carried (empty when none was chosen)."""

    fields: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    filename: str = ""


def attachment_store(request: web.Request) -> AttachmentStore:
    """Where the email adapter keeps attachments (and HTML bodies), by SHA-256."""
    settings = request.app[SETTINGS]
    return AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)


def is_multipart(request: web.Request) -> bool:
    return MULTIPART in request


async def read(request: web.Request, tenant: Tenant) -> ReplyForm:
    """The rest of a multipart reply form (the sessions middleware read its CSRF token).
    Raises AgentError for a file over the limit, before reading any more of it."""
    form = ReplyForm()
    reader = request[MULTIPART]
    cap = upload_limit(request, tenant)
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        if part.name == "file":
            data = await read_capped(part, cap)
            if data is None:
                raise AgentError(f"files may be at most {cap // 1024} kB")
            form.data, form.filename = data, safe_filename(part.filename)
            continue
        value = await read_capped(part, MAX_TEXT * 4)  # MAX_TEXT characters of UTF-8
        if value is None:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_TEXT, actual_size=MAX_TEXT * 4 + 1)
        form.fields[part.name] = value.decode("utf-8", "replace")
    return form


def policy(tenant: Tenant, channel: str) -> tuple[list[str], int] | None:
    """The types and the size a reply on the channel may carry; None: no files there."""
    if channel == "webchat" and tenant.webchat is not None:
        return list(tenant.webchat.limits.upload_types), tenant.webchat.limits.upload_max_bytes
    if channel == "email":
        return list(EMAIL_TYPES), EMAIL_MAX_BYTES
    return None


def upload_limit(request: web.Request, tenant: Tenant) -> int:
    """The most any reply of the tenant's may carry (the channel is known only once the
    whole form is read; store() then holds the file to its channel's own limit)."""
    limits = [p[1] for p in (policy(tenant, "webchat"), policy(tenant, "email")) if p]
    return min(max(limits), attachment_store(request).max_bytes)


async def store(request: web.Request, tenant: Tenant, channel: str, form: ReplyForm) -> tuple[events.Attachment, ...]:
    """The reply's attachment, checked and stored; () when no file was chosen."""
    if not form.data:
        return ()
    allowed_here = policy(tenant, channel)
    if allowed_here is None:
        raise AgentError("files can be attached to web chat and email replies only")
    allowed, cap = allowed_here
    if len(form.data) > min(cap, attachment_store(request).max_bytes):
        raise AgentError(f"files may be at most {min(cap, attachment_store(request).max_bytes) // 1024} kB here")
    content_type = checked_type(form.data, allowed)
    if not content_type:
        raise AgentError(f"this kind of file cannot be sent (allowed: {allowed_names(allowed)})")
    ref = await attachment_store(request).put(form.data)
    return (events.Attachment(url=ref, content_type=content_type, filename=form.filename, size=len(form.data)),)
