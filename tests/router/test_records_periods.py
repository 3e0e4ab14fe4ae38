"""Reports over any period from the archive (router/records/periods.py): a period the
events stream no longer holds is counted from the archived events, the same way and to
the same figures; quarters and custom ranges are periods like the others."""

from __future__ import annotations

import datetime as dt

import pytest

from ops import reports
from router import bus, events
from router.records.archive import Archive
from router.records.periods import ArchivedEvents
from router.store import text
from tests.factories import deployment
from tests.ops.test_reports import DAY, FLOOR, a_day_on_the_floor, clock  # noqa: F401 - fixture
from workers import archive as archive_worker


async def archive_everything(w, *, since_days: int = 8) -> None:
    """Archive the stream's events, as an archive that has run for `since_days` (it holds an event that old: beyond the
    week the presence at a period's start is looked for)."""
    rows = await w.store.redis.xrange(w.keys.events)
    first = int(text(rows[0][0]).partition("-")[0]) - since_days * 86_400_000
    earlier = events.PresenceChanged(tenant="acme", occurred_at=first, agent="nobody", presence="offline")
    await w.store.archive.archive(w.store, "acme", [(f"{first}-0", earlier)])
    await archive_worker.write_batch(w.store, [bus.Entry(w.keys.events, text(i), f[b"e"]) for i, f in rows])


async def trim_all_but_the_last(w) -> None:
    await w.store.redis.xtrim(w.keys.events, maxlen=1, approximate=False)


async def test_a_period_the_stream_no_longer_holds_is_counted_from_the_archive(clock, archive_url: str) -> None:  # noqa: F811
    w = await a_day_on_the_floor(clock)
    w.store.archive = await Archive.open(archive_url, size=2)
    try:
        from_stream = await reports.report(w.store, w.tenant, "day", DAY)
        await archive_everything(w)
        await trim_all_but_the_last(w)  # weeks later: trimmed, and no rollup kept

        from_archive = await reports.report(w.store, w.tenant, "day", DAY)
        week = await reports.report(w.store, w.tenant, "week", DAY)
    finally:
        await w.store.archive.close()

    assert from_stream.complete and from_archive.complete
    assert from_archive.total == from_stream.total and from_archive.total.offered == 6
    assert from_archive.queues == from_stream.queues
    assert from_archive.agents == from_stream.agents  # staffed time too: presence read from the archive
    assert week.total.offered == 6


async def test_without_the_archive_a_trimmed_period_is_partial(clock) -> None:  # noqa: F811
    w = await a_day_on_the_floor(clock)
    await trim_all_but_the_last(w)
    assert not (await reports.report(w.store, w.tenant, "day", DAY)).complete


async def test_the_archive_is_complete_only_from_its_first_event(clock, archive_url: str) -> None:  # noqa: F811
    w = await a_day_on_the_floor(clock)
    w.store.archive = await Archive.open(archive_url, size=2)
    try:
        await archive_everything(w, since_days=0)
        source = ArchivedEvents(w.store.archive)
        first = int(text((await w.store.redis.xrange(w.keys.events, count=1))[0][0]).partition("-")[0])
        assert await source.complete("acme", first)
        assert not await source.complete("acme", first - 1)
        assert not await source.complete("globex", first)
        read = [e async for e in source.read_events("acme", first, first + 1)]
        assert read and all(int(e.id.partition("-")[0]) == first for e in read)
    finally:
        await w.store.archive.close()


def test_quarters_and_custom_ranges_are_periods() -> None:
    tenant = deployment(FLOOR).tenants[0]
    start, end = reports.period_bounds(tenant, "quarter", dt.date(2026, 11, 5))
    assert (start.date(), end.date()) == (dt.date(2026, 10, 1), dt.date(2027, 1, 1))
    start, end = reports.period_bounds(tenant, "quarter", dt.date(2026, 1, 1))
    assert (start.date(), end.date()) == (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
    start, end = reports.period_bounds(tenant, "range", dt.date(2026, 2, 27), dt.date(2026, 3, 2))
    assert (start.date(), end.date()) == (dt.date(2026, 2, 27), dt.date(2026, 3, 3))
    with pytest.raises(ValueError):
        reports.period_bounds(tenant, "range", dt.date(2026, 3, 2), dt.date(2026, 3, 1))


async def test_a_range_is_the_merge_of_its_days(clock) -> None:  # noqa: F811
    w = await a_day_on_the_floor(clock)
    day = await reports.report(w.store, w.tenant, "day", DAY)
    span = await reports.report(w.store, w.tenant, "range", DAY - dt.timedelta(days=3), until=DAY)
    assert span.total == day.total and span.period == "range"
    assert (span.end - span.start).days == 4
