"""Retention benchmark: N days of traffic through routing, the desk and the archive on a
compressed clock; Redis's memory per day, PostgreSQL's bytes per conversation, the
archive's lag, and search latency over the archive at the end.

    python -m ops.bench retention [--days 30] [--contacts-per-day 200] [--customers N] [--json]

It starts its own redis-server and PostgreSQL and runs the product's code in this process
(ops/bench/archive.py's drill): each simulated day, that day's SMS contacts arrive, are
routed, accepted, answered once and closed, and each reply is sent; the archive consumer
runs beside them all along, as its process would. Then the day ends:

- the compressed clock: Lua scripts take Redis's own time, so a day of traffic takes
  seconds; the day's conversations are then dated back to their simulated day (every `*_at`
  field of their hashes moved by the same offset) and archived again as they now read.
  Eviction runs with the simulated day's clock; the streams are trimmed to the hot window
  of simulated days, and a key with a time to live expires by the simulated clock too (its
  TTL counted from the simulated day it was first seen), as Redis would over real days.
- Redis's used_memory (less what it held before the first contact) is read.

The archive's lag is, for each batch it commits, the age of the oldest entry in it (the
time between the event being added and its archive commit); `archive_lag_max_s` is the
largest. At the end it runs searches over the archive (router/records/search.py: a word, a
Japanese substring, part of a number, an agent over a week, a disposition over the whole
history) and prints their p50 and p99. Customers come from a pool (--customers, default
ten days' contacts), so after the first days most contacts are from returning customers;
a customer's record stays in Redis (it routes their next contact).

This is a measurement, not a test: nothing asserts on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import time

import psycopg

from ops import streams
from ops.bench import archive as bench_archive
from router import bus, events
from router.keys import ARCHIVE_GROUP, Keys
from router.records.search import Filters
from router.store import Store, text
from workers import archive

TENANT = bench_archive.TENANT
DAY_MS = bench_archive.DAY_MS
HOT_DAYS = bench_archive.HOT_DAYS
SEARCHES_EACH = 40  # runs of each kind of search at the end


def body_of(n: int) -> str:
    if n % 5 == 0:  # one in five in Japanese: the substring search's case
        return f"メーターの読み取りが間違っています、お客様 {n}"
    return bench_archive.body_of(n)


class Clock:
    """The simulated clock: real time plus an offset that grows by a day at each day's end,
    so that the last day ends at real time."""

    def __init__(self, days: int) -> None:
        self.offset_ms = -days * DAY_MS

    def next_day(self) -> None:
        self.offset_ms += DAY_MS

    def now_ms(self) -> int:
        return events.now_ms() + self.offset_ms


async def date_back(store: Store, conversations: set[str], offset_ms: int) -> None:
    """Move every `*_at` time of these conversations' hashes by offset_ms (to their simulated day)."""
    keys = Keys(TENANT)
    for conversation in conversations:
        record = {text(k): text(v) for k, v in (await store.redis.hgetall(keys.conversation(conversation))).items()}
        moved = {name: str(int(value) + offset_ms) for name, value in record.items() if name.endswith("_at") and value}
        if moved:
            await store.redis.hset(keys.conversation(conversation), mapping=moved)


async def expire_by(store: Store, clock: Clock, expiries: dict[str, int]) -> None:
    """Keys with a TTL expire on the simulated clock: note each new one's simulated expiry,
    delete those past it."""
    base = Keys(TENANT).base
    now = clock.now_ms()
    async for raw in store.redis.scan_iter(match=f"{base}:*", count=1000):
        key = text(raw)
        if key not in expiries and (ttl := await store.redis.pttl(key)) > 0:
            expiries[key] = now + ttl
    due = [key for key, at in expiries.items() if at <= now]
    for key in due:
        del expiries[key]
    if due:
        await store.redis.delete(*due)


async def trim_to_window(store: Store, starts: list[dict[str, str]]) -> None:
    """Each stream keeps the hot window's simulated days (what its trimming keeps over real days)."""
    if len(starts) < HOT_DAYS:
        return
    first_kept = starts[-int(HOT_DAYS)]
    for stream, entry_id in first_kept.items():
        await streams.trim(store, stream, keep_hours=0, approximate=False, keep_from=entry_id)


async def stream_heads(store: Store) -> dict[str, str]:
    """Where each stream's next entry will be: the start of a simulated day."""
    keys = Keys(TENANT)
    heads = {}
    for stream in (keys.inbound, keys.outbound, keys.events, keys.outbox):
        last = await store.redis.xrevrange(stream, count=1)
        heads[stream] = text(last[0][0]) if last else "0-0"
    return heads


async def caught_up(store: Store, timeout_s: float = 120.0) -> None:
    """Wait until the archive has read and committed every events entry."""
    stream = Keys(TENANT).events
    for _ in range(int(timeout_s / 0.01)):
        groups = {text(g["name"]): g for g in await store.redis.xinfo_groups(stream)}
        if not groups[ARCHIVE_GROUP]["lag"] and not (await store.redis.xpending(stream, ARCHIVE_GROUP))["pending"]:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the archive did not catch up in {timeout_s:.0f} s")


async def message_count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return int((await (await conn.execute("SELECT count(*) FROM messages")).fetchone())[0])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def searches(store: Store, agent_count: int, clock: Clock) -> dict[str, list[float]]:
    """Latencies (ms) of the searches an archive answers, per kind, each run SEARCHES_EACH times."""
    assert store.archive is not None
    now = dt.datetime.fromtimestamp(clock.now_ms() / 1000, dt.UTC)
    kinds = {
        "word": Filters(text="meter"),
        "japanese_substring": Filters(text="読み取り"),
        "part_of_a_number": Filters(address="555001"),
        "agent_last_week": Filters(agent=f"a{agent_count // 2}", start=now - dt.timedelta(days=7), end=now),
        "disposition_and_queue": Filters(disposition="resolved", queue="desk"),
    }
    latencies: dict[str, list[float]] = {name: [] for name in kinds}
    for n in range(SEARCHES_EACH):
        for name, filters in kinds.items():
            started = time.perf_counter()
            await store.archive.search(TENANT, filters, offset=(n % 3) * 50, limit=50)
            latencies[name].append((time.perf_counter() - started) * 1000)
    return latencies


async def run(opts: argparse.Namespace) -> dict:
    per_day, pool = opts.contacts_per_day, max(opts.customers or 10 * opts.contacts_per_day, opts.contacts_per_day)
    async with bench_archive.archived_store(opts.agents) as (store, deployment, url):
        keys = Keys(TENANT)
        clock = Clock(opts.days)
        lags: list[float] = []

        async def handle(entries: list[bus.Entry]) -> set[bus.Entry]:
            done = await archive.write_batch(store, entries)
            oldest = min(int(entry.id.partition("-")[0]) for entry in done) if done else events.now_ms()
            lags.append((events.now_ms() - oldest) / 1000)
            return done

        archiver = bus.Consumer(store, ARCHIVE_GROUP, "bench", [keys.events], handle, batch=500, block_ms=10)
        await archiver.ensure_groups()
        stop = asyncio.Event()
        running = asyncio.create_task(archiver.run(stop))
        baseline, pg_baseline = await bench_archive.used_memory(store), bench_archive.database_bytes(url)
        memory, day_lags, starts, expiries = [], [], [], {}
        closed = evicted = 0
        try:
            for day in range(opts.days):
                clock.next_day()
                starts.append(await stream_heads(store))
                before = {text(k) for k in await store.redis.keys(f"{keys.base}:conv:*")}
                closed += await bench_archive.drill(
                    store,
                    deployment,
                    per_day,
                    first=day * per_day,
                    address=lambda n: bench_archive.address_of(n % pool),
                    body=body_of,
                )
                await caught_up(store)
                today = {text(k) for k in await store.redis.keys(f"{keys.base}:conv:*")} - before
                today = {k.rsplit(":", 1)[-1] for k in today if k.count(":") == 3}
                await date_back(store, today, clock.offset_ms)
                await store.archive.archive(store, TENANT, conversations=today)
                outcomes = await archive.evict(store, TENANT, hot_days=HOT_DAYS, now_ms=clock.now_ms())
                evicted += outcomes.get("evicted", 0)
                await trim_to_window(store, starts)
                await expire_by(store, clock, expiries)
                memory.append(await bench_archive.used_memory(store) - baseline)
                day_lags.append(max(lags, default=0.0))
                lags.clear()
        finally:
            stop.set()
            await running
        pg_bytes = bench_archive.database_bytes(url) - pg_baseline
        by_kind = await searches(store, opts.agents, clock)
        latencies = [ms for values in by_kind.values() for ms in values]
        messages = await message_count(url)
    return {
        "days": opts.days,
        "contacts_per_day": per_day,
        "customers": pool,
        "closed": closed,
        "evicted": evicted,
        "hot_window_days": HOT_DAYS,
        "redis_used_memory_by_day": memory,
        "postgres_bytes_per_conversation": round(pg_bytes / max(closed, 1)),
        "archive_lag_by_day_s": [round(lag, 3) for lag in day_lags],
        "archive_lag_max_s": round(max(day_lags, default=0.0), 3),
        "archived_messages": messages,
        "searches": len(latencies),
        "search_p50_ms": round(statistics.median(latencies), 2),
        "search_p99_ms": round(percentile(latencies, 0.99), 2),
        "search_p99_ms_by_kind": {name: round(percentile(values, 0.99), 2) for name, values in by_kind.items()},
    }


def render(result: dict) -> str:
    memory = result["redis_used_memory_by_day"]
    lines = [
        f"retention benchmark: {result['days']} simulated days of {result['contacts_per_day']} SMS contacts"
        f" ({result['customers']} customers), each routed, accepted, answered once and closed;"
        f" {result['closed']} closed, {result['evicted']} evicted; hot window {result['hot_window_days']:g} days",
        "  day  Redis used_memory (bytes over the start)  archive lag max (s)",
    ]
    for day, (used, lag) in enumerate(zip(memory, result["archive_lag_by_day_s"], strict=True), start=1):
        lines.append(f"  {day:>3}  {used:>14,}  {lag:>8.3f}")
    lines += [
        f"  PostgreSQL bytes per conversation: {result['postgres_bytes_per_conversation']:,}",
        f"  archive lag max: {result['archive_lag_max_s']} s",
        f"  search over the archive ({result['searches']} queries, {result['archived_messages']:,} messages):"
        f" p50 {result['search_p50_ms']} ms, p99 {result['search_p99_ms']} ms",
        "    p99 by kind: " + ", ".join(f"{k} {v} ms" for k, v in result["search_p99_ms_by_kind"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench retention", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="simulated days of traffic")
    parser.add_argument("--contacts-per-day", type=int, default=200)
    parser.add_argument("--customers", type=int, default=0, help="the pool contacts come from (default: 10 days')")
    parser.add_argument("--agents", type=int, default=20, help="agents taking 5 SMS conversations each")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    if opts.days < 1 or opts.contacts_per_day < 1:
        parser.error("--days and --contacts-per-day must be at least 1")
    result = asyncio.run(run(opts))
    print(json.dumps(result, indent=2) if opts.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
