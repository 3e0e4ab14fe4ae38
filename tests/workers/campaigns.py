"""A campaign in a test's world, made as the operator makes one; a clock the test moves;
the dispatcher reading the outbound stream."""

from __future__ import annotations

import datetime as dt
import io
import time

from router import bus
from router.campaigns import registry
from router.campaigns.model import Campaign, parse_campaign
from router.store import text
from tests.factories import World
from workers.campaigns import audience
from workers.dispatch import Dispatcher


async def create_campaign(
    w: World, definition: str, csv_text: str, *, rejected: int = 0, launch: bool = True
) -> Campaign:
    """A campaign as `contactrouter campaign create`, `import` and `launch` make it (left a
    draft with launch=False); exactly `rejected` rows of the audience are refused."""
    campaign = parse_campaign(definition)
    await registry.create(w.store, w.deployment, campaign)
    report = await audience.import_csv(w.store, campaign, io.StringIO(csv_text))
    assert report.rejected == rejected, report.rejects
    if launch:
        await registry.change(w.store, campaign.tenant, campaign.id, "launch", deployment=w.deployment)
    return campaign


class Clock:
    """Wall time for everything that reads it (time.time): the campaigns worker, the
    dispatcher's judgement of the window, and the embedded store's TIME (leases, caps,
    stream ids). It only moves forward, as stream ids must. It stands still between the
    test's moves, or with `ticking` runs on from `start` as real time passes (for a world
    with servers and blocking reads, which wait for time to pass)."""

    def __init__(self, start: dt.datetime, *, ticking: bool = False) -> None:
        self.now = start.timestamp()
        self.ticking = ticking
        self._real = time.time
        self._since = time.monotonic()

    def _read(self) -> float:
        return self.now + (time.monotonic() - self._since if self.ticking else 0.0)

    def __enter__(self) -> Clock:
        time.time = self._read
        return self

    def __exit__(self, *_exc: object) -> None:
        time.time = self._real

    def to(self, when: dt.datetime) -> None:
        self.forward(when.timestamp() - self.now)

    def forward(self, seconds: float) -> None:
        assert seconds >= 0, "the clock only moves forward"
        self.now += seconds

    @property
    def utc(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._read(), dt.UTC)


class Outbound:
    """The dispatch worker's part: what the outbound stream holds that it has not handled
    yet (read by id, as a consumer group would hand it over, without a blocking read that
    a stopped clock would never end)."""

    def __init__(self, w: World, dispatcher: Dispatcher) -> None:
        self.w, self.dispatcher = w, dispatcher
        self.last = "0-0"

    async def dispatch(self, count: int | None = None) -> int:
        """Deliver what is waiting (its first `count` messages), in order; returns how many."""
        stream = self.w.keys.outbound
        rows = await self.w.store.redis.xrange(stream, min=f"({self.last}", count=count)
        entries = [bus.Entry(stream, text(entry_id), fields[b"e"]) for entry_id, fields in rows]
        if entries:
            self.last = entries[-1].id
            assert await self.dispatcher.handle(entries) == set(entries)
        return len(entries)
