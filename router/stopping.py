"""The pause of a long-running loop, cut short when its process is told to stop."""

from __future__ import annotations

import asyncio


async def stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop`; True if it was set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
