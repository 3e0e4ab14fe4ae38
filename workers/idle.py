"""Process types whose channel or feature has not landed yet start, say so, and wait."""

from __future__ import annotations

import asyncio
import logging

from router.config import Deployment, Settings
from router.store import Store

log = logging.getLogger(__name__)

PENDING = {
    "campaigns": "outbound campaigns (issue 7)",
    "telegram": "Telegram polling (issue 5)",
}


def runner(role: str):
    async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
        log.info("%s process started; it idles until %s lands", role, PENDING[role])
        await stop.wait()

    return run
