"""The web process's live fan-out: one reader of the tenants' live streams pushes
each entry to that visitor's open sockets in this process.

One blocking XREAD serves every socket of the process (per shard on a cluster),
instead of one blocked Redis connection per open chat. A tab registers before it
replays its history, so nothing falls between the replay and the live feed; an
item in both is shown once (the widget keeps messages by id).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from aiohttp import web

from router.keys import Keys, shard_of
from router.store import Store, StoreOutage, read_streams, text

log = logging.getLogger(__name__)

BLOCK_MS = 5_000
BATCH = 500
QUEUE_SIZE = 256  # frames waiting for one slow tab; past that its socket is closed (it reconnects and replays)


class Tab:
    """One open socket's outgoing frames, written by the socket's own writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def push(self, frame: str) -> None:
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True  # the writer closes the socket at its next frame (the queue is full)

    def close(self) -> None:
        """Tell the writer to stop once it has written what is queued."""
        try:
            self.frames.put_nowait(None)
        except asyncio.QueueFull:
            self.overflowed = True


SHUTDOWN_WAIT_S = 2.0  # how long closing waits for the readers to end


class LiveHub:
    def __init__(self, store: Store, tenants: list[str]) -> None:
        self.store = store
        self.streams = [Keys(t).webchat_live for t in tenants]
        self.tabs: dict[tuple[str, str], set[Tab]] = defaultdict(set)
        self.positions: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Begin at the streams' current ends (what is already there, tabs get from their history)."""
        for stream in self.streams:
            last = await self.store.redis.xrevrange(stream, count=1)
            self.positions[stream] = text(last[0][0]) if last else "0-0"
        read_sets = [[s] for s in self.streams] if self.store.cluster else [self.streams]
        self._tasks = [asyncio.create_task(self._run(streams), name="webchat-live") for streams in read_sets if streams]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A read blocked inside the client can be slow to notice the cancel (seen in tests):
        # never hold the web process's shutdown for it.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_WAIT_S)

    async def close_tabs(self) -> None:
        """Close every open socket (the web process is stopping): the widgets reconnect elsewhere."""
        for tabs in list(self.tabs.values()):
            for tab in list(tabs):
                await tab.ws.close(code=1001, message=b"server stopping")

    def register(self, tenant: str, visitor: str, tab: Tab) -> None:
        self.tabs[(tenant, visitor)].add(tab)

    def unregister(self, tenant: str, visitor: str, tab: Tab) -> None:
        tabs = self.tabs.get((tenant, visitor))
        if tabs is not None:
            tabs.discard(tab)
            if not tabs:
                del self.tabs[(tenant, visitor)]

    async def _run(self, streams: list[str]) -> None:
        outage = StoreOutage("web chat live feed")
        while True:
            positions = {s: self.positions[s] for s in streams}
            for stream, rows in await read_streams(self.store, positions, outage, count=BATCH, block_ms=BLOCK_MS):
                stream = text(stream)
                tenant = shard_of(stream)
                for entry_id, fields in rows:
                    self.positions[stream] = text(entry_id)
                    visitor = text(fields.get(b"v", b""))
                    frame = text(fields.get(b"e", b""))
                    for tab in list(self.tabs.get((tenant, visitor), ())):
                        tab.push(frame)
