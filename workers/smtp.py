"""The `smtp` process: an aiosmtpd server on SMTP_HOST:SMTP_PORT until stop.

The server runs on this process's event loop (not aiosmtpd's Controller, which
starts its own thread and loop) so the handler shares the store's connection.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP

from channels.email import AttachmentStore, InboundHandler
from router.config import Deployment, Settings
from router.store import Store

log = logging.getLogger(__name__)


async def start(store: Store, deployment: Deployment, settings: Settings) -> asyncio.Server:
    """Listen for mail; returns the server (close it to stop)."""
    attachments = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
    handler = InboundHandler(store, deployment, attachments)

    def protocol() -> SMTP:
        # SIZE is advertised in EHLO; MAIL FROM with a bigger SIZE, or more DATA
        # than this, is refused with 552 before the handler sees it.
        return SMTP(handler, data_size_limit=settings.smtp_max_bytes, enable_SMTPUTF8=True, timeout=60)

    server = await asyncio.get_running_loop().create_server(protocol, settings.smtp_host, settings.smtp_port)
    log.info("smtp listening on %s:%d (attachments in %s)", settings.smtp_host, settings.smtp_port, attachments.root)
    return server


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    server = await start(store, deployment, settings)
    try:
        await stop.wait()
    finally:
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=5)
        except TimeoutError:
            log.warning("smtp sessions still open at shutdown were left to close")
