"""The streams under test: entry ids, consumer-group state, waiting on the consumers, the events they wrote."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import msgspec

from ops.bench._processes import check_alive


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_ms(entry_id: bytes | str) -> int:
    """The millisecond part of a stream entry id (the Redis clock when the entry was added)."""
    return int(as_text(entry_id).split("-", 1)[0])


async def group_state(r: Any, stream: str, group: str) -> tuple[int, int]:
    """(lag, pending) of a consumer group; lag counts entries not yet delivered."""
    for row in await r.xinfo_groups(stream):
        if as_text(row["name"]) == group:
            lag = row.get("lag")
            return (int(lag) if lag is not None else 1), int(row["pending"])
    return 1, 0


async def wait_consumed(r: Any, streams: list[str], group: str, procs: list[subprocess.Popen], within: float) -> None:
    """Until every entry of the streams was read and acknowledged by the group."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        states = [await group_state(r, s, group) for s in streams]
        if all(lag == 0 and pending == 0 for lag, pending in states):
            return
        check_alive(procs)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"consumers did not drain {streams} within {within:.0f}s")


async def wait_blocked(r: Any, count: int, procs: list[subprocess.Popen], within: float = 60) -> None:
    """Until `count` clients are blocked in a read: the consumers are up and waiting for entries.

    (Redis 7.0 registers a group consumer only once a read returns entries, so
    XINFO CONSUMERS cannot tell that a consumer is waiting.)
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if int((await r.info("clients"))["blocked_clients"]) >= count:
            return
        check_alive(procs)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{count} consumers did not start within {within:.0f}s")


class Event(msgspec.Struct):
    """The fields of a router event the benchmark reads."""

    type: str = ""
    conversation: str = ""
    message: str = ""  # of a `message` event: the contact's id


_decode_event = msgspec.msgpack.Decoder(Event).decode


async def last_id(r: Any, stream: str) -> str:
    rows = await r.xrevrange(stream, count=1)
    return as_text(rows[0][0]) if rows else "0-0"


async def scan_events(r: Any, stream: str, after: str) -> list[tuple[int, Event]]:
    """Every event after an id, as (stream id ms, event)."""
    out: list[tuple[int, Event]] = []
    start = after
    while True:
        rows = await r.xrange(stream, min=f"({start}", max="+", count=10_000)
        if not rows:
            return out
        for entry_id, fields in rows:
            out.append((entry_ms(entry_id), _decode_event(fields[b"e"])))
        start = as_text(rows[-1][0])
