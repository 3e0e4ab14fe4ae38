"""Messages as they actually travelled, for the agent to check: a customer's mail as it
reached us, headers and all (the "Original message" page), and a fax reply's PDF as it
was faxed (linked beside the reply). Both are served only behind the login and only
under the conversation they belong to.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from router import conversations, events
from router.app.inbox import messages
from router.app.inbox.access import conversation_of
from router.app.inbox.attachments import attachment_store
from router.app.inbox.rendering import brand, render
from router.appkeys import STORE
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)


async def faxed_pdfs(store: Store, tenant: str, entries: list[events.HistoryEntry]) -> dict[str, str]:
    """Each fax reply's PDF as it was faxed (channels.fax.outbound keeps it): message id ->
    its attachment store digest."""
    faxes = [e.id for e in entries if e.kind == "out" and e.channel == "fax"]
    if not faxes:
        return {}
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        for message_id in faxes:
            pipe.hget(keys.delivery(message_id), "fax_pdf")
        rows = await pipe.execute()
    found = {m: messages.file_ref((url or b"").decode()) for m, url in zip(faxes, rows, strict=True)}
    return {m: digest for m, digest in found.items() if digest}


def with_faxed_pdf(view: dict[str, object], digest: str | None, files_url: str) -> dict[str, object]:
    """A fax reply's view with a link to the PDF actually faxed, once it was rendered."""
    if digest:
        faxed = {"name": "fax.pdf (as faxed)", "href": f"{files_url}/{digest}", "content_type": "application/pdf"}
        faxed |= {"size": 0, "is_image": False, "is_pdf": True, "is_audio": False}
        view["attachments"] = [*view["attachments"], faxed]  # type: ignore[misc]
    return view


async def original(request: web.Request) -> web.Response:
    """A customer's mail as it came, headers and all, as escaped text (the template
    autoescapes it): for reading what a client sent, where a header decoded oddly or a
    message looks forged. Only the conversation's own entries, behind the login."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    entries = await conversations.history(request.app[STORE], tenant.id, record["id"])
    entry = next((e for e in entries if e.id == request.match_info["entry"]), None)
    digest = messages.original_ref(entry) if entry is not None else ""
    if not digest:
        raise web.HTTPNotFound()
    try:
        text, size = await asyncio.to_thread(messages.read_original, attachment_store(request).root, digest)
    except OSError:
        log.warning("original message %s of %s is missing from the attachment store", digest, record["id"])
        raise web.HTTPNotFound() from None
    response = render(
        request,
        "original.html",
        tenant=tenant,
        brand=brand(tenant),
        record=record,
        entry=messages.live_view(entry, {a.id: a.name or a.id for a in tenant.agents}),
        text=text,
        size=size,
        shortened=size > messages.MAX_RAW_SHOWN,
        download=f"/inbox/t/{tenant.id}/c/{record['id']}/files/{digest}",
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
