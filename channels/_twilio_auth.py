"""Twilio webhook authentication: which URL Twilio signed, which token signed it,
and the form checked against its X-Twilio-Signature.

Shared by every Twilio webhook (SMS inbound, SMS status callbacks, voice). The
signature itself is computed and compared by twilio's own RequestValidator.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

from router.appkeys import DEPLOYMENT, SETTINGS
from router.config import Tenant
from router.errors import UnknownTenant
from router.keyring import KeyRing, ring
from router.settings import Settings

log = logging.getLogger(__name__)

# Twilio's webhook forms are a few hundred bytes (an MMS with ten media URLs a few
# kB); anything this big is not Twilio, and is refused before it is parsed.
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


def public_url(request: web.Request, settings: Settings) -> str:
    """The URL Twilio signed: PUBLIC_URL plus the path and query when set (behind a
    proxy or tunnel the request's own URL is the proxy's), else the request's own.

    The path and query are taken as they arrived (raw_path), not re-encoded, since
    Twilio signs the exact URL it called. Twilio signs some URLs with an explicit
    :443/:80 and some without; RequestValidator.validate tries both forms.
    """
    if settings.public_url:
        return settings.public_url + request.raw_path
    return f"{request.scheme}://{request.host}{request.raw_path}"


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The request's urlencoded form, size-limited (aiohttp keeps the body and the
    parsed form, so a second call reads nothing again)."""
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
    body = await request.read()  # a chunked body is bounded by client_max_size, then by us
    if len(body) > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=len(body))
    if request.content_type != FORM_TYPE:  # Twilio posts nothing else (no multipart, no files)
        raise web.HTTPUnsupportedMediaType(text=f"expected {FORM_TYPE}, got {request.content_type}")
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"malformed form: {exc}") from None
    return form  # type: ignore[return-value]  # urlencoded: every value is a str


async def verified_form(request: web.Request, auth_token: KeyRing | str, settings: Settings) -> MultiDictProxy[str]:
    """The POST form, after checking X-Twilio-Signature against it and public_url, with
    each of the tokens (during a rotation, the new one and the old: router.keyring).

    Raises HTTPForbidden(text=reason) when the signature is missing or wrong, or no
    token is known. With TWILIO_SIGNATURES=off nothing is checked (the web app logs
    a warning at start).
    """
    tokens = ring(auth_token)
    form = await read_form(request)
    if not settings.twilio_signatures:
        return form
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise web.HTTPForbidden(text=f"missing {SIGNATURE_HEADER} header")
    if not tokens:
        raise web.HTTPForbidden(text="no Twilio auth token for this number: webhook refused")
    url = public_url(request, settings)
    if not tokens.any(lambda token: RequestValidator(token).validate(url, form, signature)):
        log.warning("refused a webhook with a wrong %s for %s", SIGNATURE_HEADER, url)
        raise web.HTTPForbidden(text=f"invalid {SIGNATURE_HEADER} for {url}")
    return form


def tokens_for(tenant: Tenant, settings: Settings) -> KeyRing:
    """The tokens a tenant's webhooks may be signed with: its Twilio account's auth tokens,
    or, for a tenant without an account, the sandbox token; empty when neither exists."""
    if tenant.twilio is not None:
        return tenant.twilio.auth_ring()
    return KeyRing.parse(settings.twilio_sandbox_token)


ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


async def verified_tenant_form(request: web.Request, tenant: Tenant, settings: Settings) -> MultiDictProxy[str]:
    """A webhook's form, signed with the tenant's token and sent for the tenant's
    own Twilio account (AccountSid); 403 otherwise."""
    tokens = tokens_for(tenant, settings)
    if not tokens and settings.twilio_signatures:
        log.warning("webhook refused: tenant %s has no Twilio auth token (nor a sandbox one)", tenant.id)
        raise web.HTTPForbidden(text=f"no Twilio auth token for tenant {tenant.id}: webhook refused")
    form = await verified_form(request, tokens, settings)
    account = form.get("AccountSid", "")
    if not ACCOUNT_SID.fullmatch(account):
        raise web.HTTPBadRequest(text=f"malformed AccountSid {account!r}")
    if tenant.twilio is not None and account != tenant.twilio.account_sid:
        log.warning("webhook refused: AccountSid %s is not tenant %s's account", account, tenant.id)
        raise web.HTTPForbidden(text=f"AccountSid {account} does not own tenant {tenant.id}'s numbers")
    return form


async def tenant_form(request: web.Request, required: tuple[str, ...]) -> tuple[Tenant, MultiDictProxy[str]]:
    """The tenant named by the URL ({tenant}) and the verified form of a callback
    that carries no number of theirs (status reports, recordings, transcriptions)."""
    deployment, settings = request.app[DEPLOYMENT], request.app[SETTINGS]
    form = await read_form(request)
    missing = [name for name in ("AccountSid", *required) if not form.get(name)]
    if missing:
        raise web.HTTPBadRequest(text=f"missing parameters: {', '.join(missing)}")
    try:
        tenant = deployment.tenant(request.match_info["tenant"])
    except UnknownTenant:
        raise web.HTTPNotFound(text="unknown tenant") from None
    return tenant, await verified_tenant_form(request, tenant, settings)
