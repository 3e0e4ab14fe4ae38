"""Voicemail recordings and MMS media, fetched from Twilio behind the inbox's login:
GET /inbox/t/{tenant}/c/{conversation}/media/{n}.

Twilio may require its credentials for a media URL, and an agent's browser has
none, so the web process fetches it with the tenant's own account and streams it
on. `n` counts the provider URLs of that conversation's history, so nothing but
a URL a (signature-checked) webhook put there can be fetched, and only over https
from Twilio's hosts (or TWILIO_API_BASE, the local stand-in in tests): never an
open proxy. Redirects (Twilio sends media on to its storage) are followed a few
times, to Twilio's storage hosts only, and the credentials go to Twilio alone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp import web

from router import audit, conversations
from router.app.inbox import messages
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.login import client_address
from router.app.inbox.sessions import USER
from router.appkeys import SETTINGS, STORE
from router.config import Tenant
from router.settings import Settings

log = logging.getLogger(__name__)

TWILIO_HOSTS = ("twilio.com",)  # and their subdomains (api.twilio.com): credentials go here only
STORAGE_HOSTS = ("twilio.com", "twiliocdn.com", "amazonaws.com")  # where Twilio redirects media to
MAX_REDIRECTS = 3
TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=30)
CHUNK = 64 * 1024
# Shown in the browser (played, viewed); anything else is a download.
INLINE_PREFIXES = ("audio/", "image/", "video/")
INLINE_TYPES = frozenset({"application/pdf"})
CLIENT = web.AppKey("inbox_media_client", aiohttp.ClientSession)


async def client_context(app: web.Application) -> AsyncIterator[None]:
    """One connection pool for every fetch of the process, closed with the app."""
    app[CLIENT] = aiohttp.ClientSession(timeout=TIMEOUT)
    try:
        yield
    finally:
        await app[CLIENT].close()


def _on(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def fetch_url(url: str, settings: Settings, domains: tuple[str, ...] = TWILIO_HOSTS) -> str | None:
    """Where to fetch a media URL from, or None if it is no https URL on those hosts.
    With TWILIO_API_BASE, Twilio's URLs go to it instead (as the REST client's do)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    base = settings.twilio_api_base
    if base and url.startswith(base + "/"):
        return url
    if parts.scheme != "https" or parts.username or parts.password or not _on(host, domains):
        return None
    if base and _on(host, TWILIO_HOSTS):
        return base + parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def credentials(url: str, tenant: Tenant, settings: Settings) -> dict[str, str]:
    """The Authorization header for a fetch: the tenant's account, to Twilio's API only."""
    if tenant.twilio is None or not tenant.twilio.auth_token:
        return {}
    host = (urlsplit(url).hostname or "").lower()
    base = settings.twilio_api_base
    if (base and url.startswith(base + "/")) or (url.startswith("https://") and _on(host, TWILIO_HOSTS)):
        return {"Authorization": aiohttp.encode_basic_auth(tenant.twilio.account_sid, tenant.twilio.auth_token)}
    return {}


def _headers(content_type: str, length: int | None) -> dict[str, str]:
    content_type = content_type.split(";", 1)[0].strip().lower()
    inline = content_type.startswith(INLINE_PREFIXES) or content_type in INLINE_TYPES
    headers = messages.file_headers(content_type, inline)
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


async def media(request: web.Request) -> web.StreamResponse:
    """The conversation's n-th provider media, fetched with the tenant's Twilio account."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    settings: Settings = request.app[SETTINGS]
    entries = await conversations.history(request.app[STORE], tenant.id, record["id"])
    found = messages.provider_media(entries)
    n = int(request.match_info["n"])
    if n >= len(found):
        raise web.HTTPNotFound()
    attachment = found[n]
    url = fetch_url(attachment.url, settings)
    if url is None:
        log.warning("media %s of %s/%s is not on Twilio's hosts: not fetched", attachment.url, tenant.id, record["id"])
        raise web.HTTPNotFound()
    if attachment.content_type.startswith("audio/"):  # a voicemail or call recording: who listened
        await audit.record(
            request.app[STORE],
            "recording_opened",
            actor=request[USER].login,
            client=client_address(request),
            tenants=(tenant.id,),
            target=f"conversation {record['id']}, recording {n}",
        )
    return await relay(request, tenant, url, attachment.content_type, f"{tenant.id}/{record['id']}")


async def relay(request: web.Request, tenant: Tenant, url: str, content_type: str, what: str) -> web.StreamResponse:
    """Fetch a Twilio-hosted file (`url` from fetch_url) with the tenant's account and stream
    it on, following redirects to Twilio's storage only; `what` names it in the logs."""
    settings: Settings = request.app[SETTINGS]
    cap = settings.attachment_max_bytes
    session = request.app[CLIENT]
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            async with session.get(url, headers=credentials(url, tenant, settings), allow_redirects=False) as upstream:
                if upstream.status in (301, 302, 303, 307, 308):
                    target = fetch_url(urljoin(url, upstream.headers.get("Location", "")), settings, STORAGE_HOSTS)
                    if target is None:
                        log.warning("media of %s redirected off Twilio's storage: not followed", tenant.id)
                        raise web.HTTPBadGateway(text="the media is not where Twilio keeps media")
                    url = target
                    continue
                return await _relay(request, upstream, content_type, cap)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("media of %s could not be fetched: %s", what, exc)
        raise web.HTTPBadGateway(text="the media could not be fetched from Twilio; try again") from None
    raise web.HTTPBadGateway(text="too many redirects")


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, fallback_type: str, cap: int
) -> web.StreamResponse:
    if upstream.status == 404:
        raise web.HTTPNotFound(text="Twilio no longer has this media")
    if upstream.status != 200:
        log.warning("media fetch answered HTTP %d", upstream.status)
        raise web.HTTPBadGateway(text=f"Twilio answered HTTP {upstream.status}")
    # A compressed answer is relayed decompressed: its length is then not the one Twilio said.
    length = None if upstream.headers.get("Content-Encoding") else upstream.content_length
    if length is not None and length > cap:
        raise web.HTTPBadGateway(text=f"the media is over {cap} bytes")
    content_type = upstream.headers.get("Content-Type") or fallback_type
    response = web.StreamResponse(headers=_headers(content_type, length))
    await response.prepare(request)
    sent = 0
    try:
        async for chunk in upstream.content.iter_chunked(CHUNK):
            sent += len(chunk)
            if sent > cap:  # no length said so up front: cut it off (the browser sees a broken download)
                raise ValueError(f"over {cap} bytes")
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # The answer has begun: all that is left is to break it off, so it is not taken as whole.
        log.warning("media relay broken off after %d bytes: %s", sent, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def routes(app: web.Application) -> None:
    app.cleanup_ctx.append(client_context)
    app.router.add_get(CONVERSATION_PATH + "/media/{n:[0-9]{1,4}}", media)
