"""The web process: health and readiness, metrics, every channel's webhooks (from the
channels' registry), the agents' inbox under /inbox and campaign email's one-click
unsubscribe."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web

from channels import setup_webhooks
from ops import access, health, metrics
from router.app import inbox
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Deployment
from router.settings import Settings
from router.store import Store
from workers.campaigns import unsubscribe

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store answers and every tenant's consumer groups exist (ops/health.py).
    Anyone may read the status; the problems and the groups (which name every tenant and
    their volumes) only with OPS_TOKEN as the bearer token."""
    report = await health.check(request.app[STORE], request.app[DEPLOYMENT])
    status = 200 if report.ready else 503
    if not access.bearer(request, request.app[SETTINGS].ops_token):
        return web.json_response({"ready": report.ready}, status=status)
    groups = [msgspec.structs.asdict(group) for group in report.groups]
    return web.json_response({"ready": report.ready, "problems": report.problems, "groups": groups}, status=status)


def application(store: Store, deployment: Deployment, settings: Settings) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[STORE] = store
    app[DEPLOYMENT] = deployment
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics.mount(app, store, deployment, settings.ops_token)  # the public port: only with the token
    setup_webhooks(app)
    inbox.setup(app)
    unsubscribe.setup(app)  # one-click List-Unsubscribe (RFC 8058) for campaign email
    if not settings.twilio_signatures:
        log.warning("Twilio signature checking is OFF (TWILIO_SIGNATURES=off): any request is trusted")
    return app


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    runner = web.AppRunner(application(store, deployment, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("web listening on http://%s:%d", settings.host, settings.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
