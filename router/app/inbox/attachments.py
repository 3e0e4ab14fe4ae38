"""A file an agent attaches to a reply (a multipart reply form).

The checks are the web chat uploads' own (channels.webchat.uploads): the type is
what the bytes are, one of the tenant's `upload_types`, at most `upload_max_bytes`,
read as a stream and never further than one byte past the limit. A kept file goes
into the attachment store and rides on the reply as a "store:<sha256>" attachment,
which the web chat sender shows the visitor as a link or an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from router import events
from router.agents import AgentError
from router.app.inbox.pages import attachment_store
from router.app.inbox.rendering import MAX_TEXT
from router.app.inbox.sessions import MULTIPART
from router.config import Tenant
from router.files import allowed_names, checked_type, read_capped, safe_filename

ATTACHABLE = ("webchat",)  # channels whose sender delivers a stored file to the customer


@dataclass
class ReplyForm:
    """A reply form's text fields and the file it carried (empty when none was chosen)."""

    fields: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    filename: str = ""


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


def upload_limit(request: web.Request, tenant: Tenant) -> int:
    limits = tenant.webchat.limits.upload_max_bytes if tenant.webchat is not None else 0
    return min(limits, attachment_store(request).max_bytes)


async def store(request: web.Request, tenant: Tenant, channel: str, form: ReplyForm) -> tuple[events.Attachment, ...]:
    """The reply's attachment, checked and stored; () when no file was chosen."""
    if not form.data:
        return ()
    if channel not in ATTACHABLE or tenant.webchat is None:
        raise AgentError("files can be attached to web chat replies only")
    allowed = tenant.webchat.limits.upload_types
    content_type = checked_type(form.data, allowed)
    if not content_type:
        raise AgentError(f"this kind of file cannot be sent (allowed: {allowed_names(allowed)})")
    ref = await attachment_store(request).put(form.data)
    return (events.Attachment(url=ref, content_type=content_type, filename=form.filename, size=len(form.data)),)
