"""How the tests' stand-ins for a provider's API (twilio_api, telegram_api) listen:
a real HTTP server on a free local port, so the provider's own client library talks
to it over the network as it would to the provider."""

from __future__ import annotations

from aiohttp import web


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on 127.0.0.1: its runner (cleanup() stops it) and base URL."""
    # A client that gave up on a slow answer leaves the handler sleeping: stop
    # it then (handler_cancellation), and never wait long for one at cleanup.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
