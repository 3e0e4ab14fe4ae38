"""Twilio's REST API through its official client, one client per tenant account.

Shared by every Twilio sender (SMS, voice). The client speaks the
protocol; this module only decides where it goes (Twilio, or another base URL
such as a local recording server in tests) and how long a request may take.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.sandbox import SandboxSender
from channels.transport import OutcomeUnknown, PermanentFailure, TemporaryFailure
from router import atomic
from router.config import Deployment, Tenant
from router.events import OutboundMessage
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)

# A whole request (connect, send, answer). The dispatcher presumes a send older
# than its lease (CONTACTROUTER_SEND_LEASE_MS, 120 s by default) dead and reconciles it,
# so a request must always end long before that.
TIMEOUT_S = 20.0


class _HttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client with three changes.

    - Requests to Twilio's hosts go to `api_base` instead, when one is set.
    - The timeout given here applies to every request: AsyncTwilioHttpClient
      passes only a per-request timeout on to aiohttp, the API resources never
      give one, and aiohttp takes `timeout=None` as "no timeout", so a hung
      connection would otherwise hold the send for ever.
    - The credentials go as an Authorization header: aiohttp deprecates the
      BasicAuth object AsyncTwilioHttpClient makes of them (gone in aiohttp 4).
    """

    def __init__(self, *, timeout: float, api_base: str = "") -> None:
        super().__init__(timeout=timeout)
        self.api_base = api_base.rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the signature is the base class's)
        allow_redirects: bool = False,
    ) -> Response:
        if self.api_base:
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith(".twilio.com"):
                url = self.api_base + parts.path + (f"?{parts.query}" if parts.query else "")
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


class TwilioClients:
    """The Twilio client of each tenant account, made on first use and sharing
    one connection pool. Open it inside the event loop that uses it."""

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._http: _HttpClient | None = None
        self._clients: dict[str, Client] = {}

    def client(self, tenant: Tenant) -> Client:
        """The tenant's client; the tenant must have a Twilio account."""
        if tenant.twilio is None:
            raise ValueError(f"tenant {tenant.id} has no Twilio account")
        client = self._clients.get(tenant.id)
        if client is None:
            if self._http is None:
                self._http = _HttpClient(timeout=self.timeout_s, api_base=self.settings.twilio_api_base)
            client = Client(
                tenant.twilio.account_sid,
                tenant.twilio.auth_token,
                account_sid=tenant.twilio.account_sid,
                http_client=self._http,
                # Anything the client does not get here it reads from os.environ
                # (TWILIO_EDGE, TWILIO_REGION; an empty mapping counts as none):
                # configuration is read once at start-up, never by a library.
                environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
            )
            self._clients[tenant.id] = client
        return client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._clients.clear()


# Twilio answered that it did nothing and asks to come back later (rate limit,
# service unavailable): safe to retry. Any other 5xx may come after Twilio
# created the message or call, so its outcome is unknown and it is never resent.
RETRY_STATUSES = frozenset({429, 503})


def server_failure(status: int, detail: str) -> TemporaryFailure | OutcomeUnknown | None:
    """The dispatcher's outcome for Twilio's own trouble, or None for a 4xx refusal."""
    if status in RETRY_STATUSES:
        return TemporaryFailure(f"Twilio HTTP {status}: {detail}")
    if status >= 500:
        return OutcomeUnknown(f"Twilio HTTP {status} (it may have acted on the request): {detail}")
    return None


# What Twilio's client raises when Twilio answered with an error.
TwilioError = (TwilioRestException, TwilioServiceException)


def twilio_failure(
    exc: TwilioRestException | TwilioServiceException,
) -> PermanentFailure | TemporaryFailure | OutcomeUnknown:
    """Twilio's error answer as the dispatcher's outcome: retry what may pass later,
    never resend what Twilio may have acted on, and give up on a refusal."""
    detail = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
    trouble = server_failure(exc.status, detail)
    if trouble is not None:
        return trouble
    return PermanentFailure(f"Twilio error {exc.code}: {detail} (HTTP {exc.status})")


def no_answer(exc: aiohttp.ClientError | TimeoutError) -> TemporaryFailure | OutcomeUnknown:
    """The dispatcher's outcome when a request got no answer from Twilio."""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        # never connected: Twilio cannot have the message or call, a retry is safe
        return TemporaryFailure(f"Twilio unreachable: {type(exc).__name__}: {exc}")
    # The request may have reached Twilio, which has no idempotency key: sending
    # again could text or ring the customer twice, so the outcome is unknown.
    return OutcomeUnknown(f"no answer from Twilio after sending: {type(exc).__name__}: {exc}")


class TwilioSender:
    """What the SMS and voice senders share: the deployment's tenants, the sandbox
    for tenants without Twilio, one pool of Twilio clients, and the mark before
    each request that reconcile reads."""

    channel = ""

    def __init__(self, store: Store, deployment: Deployment, settings: Settings, *, timeout_s: float = TIMEOUT_S):
        self.store = store
        self.deployment = deployment
        self.settings = settings
        self.sandbox = SandboxSender(store, self.channel)
        self.twilio = TwilioClients(settings, timeout_s=timeout_s)

    async def close(self) -> None:
        await self.twilio.close()

    async def _mark_requested(self, message: OutboundMessage, **fields: str) -> int:
        """Note, in one round trip, that this attempt is about to call Twilio; returns the attempt."""
        return await atomic.mark_requested(self.store, message.tenant, message.id, **fields)
