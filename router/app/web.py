"""The web process: health and readiness, metrics, every channel's webhooks (from the
channels' registry), the agents' inbox under /inbox, campaign email's one-click
unsubscribe, survey email's rating page and the tenants' public help centres."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from redis.exceptions import ReadOnlyError, TryAgainError

from channels import setup_webhooks
from ops import access, health, metrics
from router import logcontext
from router.app import help_centre, inbox, rating_page
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Deployment
from router.records.archive import ArchiveUnavailable
from router.settings import Settings
from router.store import STORE_ERRORS, Store
from workers.campaigns import unsubscribe

log = logging.getLogger(__name__)


class PortBusy(OSError):
    """The web port could not be bound: the role fails and the process exits non-zero."""


RETRY_AFTER_S = 5  # what a 503 asks the caller to wait (Twilio retries a 5xx webhook anyway)
# The store is away for a moment (failing over, restarting, out of connections), not broken:
# beyond the client's retry budget (REDIS_RETRY_S), a request is answered 503, never 500.
# TRYAGAIN: a multi-key command during resharding; READONLY: a write reached a demoted primary.
UNAVAILABLE = (*STORE_ERRORS, TryAgainError, ReadOnlyError)


_RESPONDING = web.RequestKey("responding", bool)  # set once a response to the request is being sent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Unavailable:
    """Answers 503 with Retry-After for a request the store could not serve. Logs the
    first such answer, then at most one line a minute with how many followed, so an
    outage is one warning and not a traceback per webhook."""

    def __init__(self) -> None:
        self._logged_at = 0.0
        self._since_logged = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ArchiveUnavailable as exc:
            # Redis answers; what only the archive holds (an evicted conversation) does not.
            if request.get(_RESPONDING):
                raise
            self._log(request, exc)
            return web.Response(
                status=503,
                text="archive unavailable: this record is kept only in the archive, whose database does not"
                " answer; try again in a few seconds\n",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        except UNAVAILABLE as exc:
            cause: BaseException = exc
        except web.HTTPInternalServerError as exc:
            # A webhook that answers 500 itself so the provider retries (channels/sms, telegram):
            # a store that is away makes it 503 as well.
            if not isinstance(exc.__context__, UNAVAILABLE):
                raise
            cause = exc.__context__
        if request.get(_RESPONDING):
            raise cause  # a response (a websocket) had begun: there is no status left to send
        self._log(request, cause)
        return web.Response(
            status=503,
            text="briefly unavailable: try again in a few seconds\n",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @staticmethod
    async def responding(request: web.Request, response: web.StreamResponse) -> None:
        request[_RESPONDING] = True

    def _log(self, request: web.Request, cause: BaseException) -> None:
        self._since_logged += 1
        if time.monotonic() - self._logged_at < 60:
            return
        log.warning(
            "store unavailable: %s %s answered 503 (%d since the last such line): %s: %s",
            request.method,
            request.path,
            self._since_logged,
            type(cause).__name__,
            cause,
        )
        self._logged_at, self._since_logged = time.monotonic(), 0


@web.middleware
async def about_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's lines, its access line too, carry the tenant and conversation its path
    names (each request runs in a task of its own, so nothing leaks into the next); a webhook
    adds its tenant and contact once it has taken the contact in (router/bus.py)."""
    match = request.match_info
    logcontext.bind(tenant=match.get("tenant", ""), conversation=match.get("conversation", ""))
    return await handler(request)


@web.middleware
async def count_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts each answer by its route's pattern (`/inbox/t/{tenant}/c/{conversation}`: ids are
    no labels, or every conversation would be a series of its own) and status code."""
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        metrics.HTTP_REQUESTS.labels(route, request.method, str(exc.status)).inc()
        raise
    except BaseException:
        metrics.HTTP_REQUESTS.labels(route, request.method, "500").inc()
        raise
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status)).inc()
    return response


QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes, every few seconds
SECRET_PARTS = ("token", "link")  # path parts that are credentials: an unsubscribe token, a signed file link


class AccessLog(AbstractAccessLogger):
    """One line per request, its parts as fields of their own in JSON logs (method, path,
    status, ms, peer). The path without its query, and with the parts that are credentials
    named instead of shown (`/unsubscribe/acme/{token}`). Successful probes and scrapes are
    left out."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        if path in QUIET_PATHS and response.status < 400:
            return
        match = getattr(request, "match_info", None) or {}
        for part in SECRET_PARTS:
            if match.get(part):
                path = path.replace(match[part], "{" + part + "}")
        ms = round(time * 1000, 1)
        self.logger.info(
            "%s %s %d %.1f ms",
            request.method,
            path,
            response.status,
            ms,
            extra={"method": request.method, "path": path, "status": response.status, "ms": ms,
                   "peer": request.remote or ""},
        )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def runner_options(settings: Settings) -> dict:
    """The access log, unless ACCESS_LOG is off."""
    if not settings.access_log:
        return {"access_log": None}
    return {"access_log": logging.getLogger("router.app.access"), "access_log_class": AccessLog}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """200 while the web process can take traffic: some shard answers and the consumer
    groups exist (ops/health.py). `status` tells the rest: `degraded` when a tenant is not
    served (no live routing, dispatch or timers worker, its shard away), which taking web
    processes out of a load balancer would not mend. Anyone may read the status; the problems,
    groups and workers (which name every tenant and their volumes) only with OPS_TOKEN."""
    report = await health.check(request.app[STORE], request.app[DEPLOYMENT])
    code = 200 if report.ready else 503
    if not access.bearer(request, request.app[SETTINGS].ops_token):
        return web.json_response({"ready": report.ready, "status": report.status}, status=code)
    detail = msgspec.to_builtins(report)
    return web.json_response(detail, status=code)


def application(store: Store, deployment: Deployment, settings: Settings) -> web.Application:
    unavailable = _Unavailable()
    middlewares = [about_request, count_request, unavailable.middleware]  # count_request sees the 503s
    app = web.Application(client_max_size=2 * 1024 * 1024, middlewares=middlewares)
    app.on_response_prepare.append(unavailable.responding)
    app[STORE] = store
    app[DEPLOYMENT] = deployment
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics.mount(app, store, deployment, settings.ops_token)  # the public port: only with the token
    setup_webhooks(app)
    inbox.setup(app)
    unsubscribe.setup(app)  # one-click List-Unsubscribe (RFC 8058) for campaign email
    help_centre.setup(app)  # each tenant's public help articles, and the chat widget's suggestions
    rating_page.setup(app)  # the signed one-click rating links of survey email
    if not settings.twilio_signatures:
        log.warning("Twilio signature checking is OFF (TWILIO_SIGNATURES=off): any request is trusted")
    return app


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    runner = web.AppRunner(application(store, deployment, settings), **runner_options(settings))
    await runner.setup()
    # WEB_REUSE_PORT: several web processes share PORT, and the kernel spreads the connections
    # among them; one that dies or restarts leaves the others listening.
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.web_reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        # A port taken: the app's background tasks (the live feeds) started with the runner, and
        # must end with it, or the process would say it stops and never exit.
        await runner.cleanup()
        raise PortBusy(f"web cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from exc
    log.info(
        "web listening on http://%s:%d%s",
        settings.host,
        settings.port,
        " (shared with other web processes: WEB_REUSE_PORT)" if settings.web_reuse_port else "",
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
