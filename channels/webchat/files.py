"""Files in a chat, back to the visitor: GET /webchat/{tenant}/files/{link}.

A transcript keeps each file's attachment store reference; a tab is never shown
it. Whenever a message with files goes to a tab (the replayed history, a live
message), each file gets a link signed with the server's secret for that tenant
and visitor, valid for LINK_TTL_S: the link is the only credential (an <img> or a
new tab on the tenant's site carries no token of ours), so it is short-lived and
cannot be turned into another file, visitor or tenant. Anything that does not
check out is a 404, the same as a file that is not there.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from channels.webchat._runtime import RUNTIME, chat_tenant
from channels.webchat.identity import seal, unseal
from router.keyring import KeyRing

log = logging.getLogger(__name__)

PATH = "/webchat/{tenant}/files/{link}"
LINK_TTL_S = 3600  # an open tab asks for fresh links well before (the socket's "links" frame)
MAX_LINK = 2048
# Shown in the browser rather than downloaded; anything else is served as a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"})


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, download)


def sign_link(
    secret: KeyRing | str,
    tenant: str,
    visitor: str,
    ref: str,
    content_type: str,
    name: str,
    *,
    now: float | None = None,
) -> str:
    """A link token for one stored file: base64url JSON, a dot, and its HMAC."""
    claims = {
        "t": tenant,
        "v": visitor,
        "r": ref,
        "c": content_type,
        "n": name,
        "exp": int((time.time() if now is None else now) + LINK_TTL_S),
    }
    return seal(secret, "webchat-file", claims)


def verify_link(secret: KeyRing | str, tenant: str, link: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a link signed for this tenant and still valid, else None."""
    claims = unseal(secret, "webchat-file", link, max_length=MAX_LINK)
    try:
        if claims["t"] != tenant or int(claims["exp"]) < (time.time() if now is None else now):
            return None
        return {k: str(claims[k]) for k in ("v", "r", "c", "n")}
    except (ValueError, KeyError, TypeError):
        return None


def linked(item: dict[str, Any], secret: KeyRing | str, tenant: str, visitor: str) -> dict[str, Any]:
    """A message item as a tab gets it: each file's store reference replaced by a signed link."""
    files = item.get("files")
    if not files:
        return item
    shown = []
    for file in files:
        file = dict(file)
        ref = file.pop("ref", "")
        if ref:
            file["link"] = sign_link(secret, tenant, visitor, ref, file.get("content_type", ""), file.get("name", ""))
        shown.append(file)
    return {**item, "files": shown}


def linked_frame(frame: str, secret: KeyRing | str, tenant: str, visitor: str) -> str:
    """A live frame (JSON text) with its files linked; frames without files pass untouched."""
    if '"ref":' not in frame:
        return frame
    try:
        item = json.loads(frame)
    except ValueError:
        return frame
    return json.dumps(linked(item, secret, tenant, visitor)) if isinstance(item, dict) else frame


async def download(request: web.Request) -> web.StreamResponse:
    tenant, _webchat = chat_tenant(request)
    runtime = request.app[RUNTIME]
    claims = verify_link(runtime.secret, tenant.id, request.match_info["link"])
    if claims is None:
        raise web.HTTPNotFound(text="no such file")
    try:
        path = runtime.attachments.path(claims["r"])
    except KeyError:
        raise web.HTTPNotFound(text="no such file") from None
    if not path.is_file():
        log.warning("web chat file %s of %s is missing from the attachment store", claims["r"], tenant.id)
        raise web.HTTPNotFound(text="no such file")
    inline = claims["c"] in INLINE_TYPES
    name = quote(claims["n"] or "file", safe="")
    headers = {
        "Content-Type": claims["c"] if inline else "application/octet-stream",
        "Content-Disposition": f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{name}",
        # Served from our origin: never a page that could run anything there.
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
        "Referrer-Policy": "no-referrer",
    }
    return web.FileResponse(path, headers=headers)
