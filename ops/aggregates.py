"""A report's figures in summable form, and the one pass over a tenant's events stream
that computes them for a run of days (ops/reports.py turns them into rows; ops/rollups.py
keeps each day's for good).

Everything that starts (a contact queued, an agent's handling) is followed until the end of
the day after the one it started in, however long the run: so any run of days is exactly
the merge of its days.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import msgspec

from router import events
from router.config import Tenant
from router.figures import Contact, QueueSums, count
from router.keys import Keys
from router.records.periods import ArchivedEvents
from router.store import Store, text

STAFFED = frozenset({"available", "busy"})
PAGE = 1000  # stream entries per read
PRESENCE_LOOKBACK_MS = 7 * 24 * 3600 * 1000  # how far back an agent's presence at the start is looked for


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _next_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq) + 1}"


def _previous_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq) - 1}" if int(seq) else f"{int(ms) - 1}"


def decode_event(entry_id: bytes, fields: dict) -> events.StateEvent | None:
    try:
        return events.decode_state(fields[b"e"], text(entry_id))
    except (KeyError, msgspec.ValidationError, msgspec.DecodeError):
        return None  # an event type newer than this code, or not a state event: not ours to count


async def read_events(store: Store, tenant: str, start_ms: int, end_ms: int) -> AsyncIterator[events.StateEvent]:
    """A tenant's state events in [start_ms, end_ms), oldest first, read in pages by stream id."""
    stream, low, high = Keys(tenant).events, str(start_ms), str(end_ms - 1)
    while True:
        rows = await store.redis.xrange(stream, min=low, max=high, count=PAGE)
        for entry_id, fields in rows:
            event = decode_event(entry_id, fields)
            if event is not None:
                yield event
        if len(rows) < PAGE:
            return
        low = _next_id(text(rows[-1][0]))


async def _presence_before(store: Store, tenant: Tenant, start_ms: int) -> dict[str, str]:
    """Each agent's presence at start_ms: their last change before it (newest first, stopping
    once every agent is found); an agent with no change in PRESENCE_LOOKBACK_MS counts offline."""
    wanted = {agent.id for agent in tenant.agents}
    found: dict[str, str] = {}
    stream, high, low = Keys(tenant.id).events, str(start_ms - 1), str(max(0, start_ms - PRESENCE_LOOKBACK_MS))
    while wanted - found.keys():
        rows = await store.redis.xrevrange(stream, max=high, min=low, count=PAGE)
        for entry_id, fields in rows:
            event = decode_event(entry_id, fields)
            if isinstance(event, events.PresenceChanged) and event.agent not in found:
                found[event.agent] = event.presence
        if len(rows) < PAGE:
            break
        high = _previous_id(text(rows[-1][0]))
    return found


async def _complete(store: Store, tenant: str, start_ms: int) -> bool:
    """Whether the stream still holds the whole period: its first entry is older than the
    period, or nothing was ever trimmed from it (a young stream)."""
    stream = Keys(tenant).events
    first = await store.redis.xrange(stream, count=1)
    if not first or int(text(first[0][0]).partition("-")[0]) <= start_ms:
        return True
    info = await store.redis.xinfo_stream(stream)
    added = info.get("entries-added")  # Redis 7: entries ever added, trimmed ones included
    return added is not None and int(added) == int(info["length"])


# --- summable aggregates: what a day's rollup stores and a longer period merges ---


class AgentSums(msgspec.Struct, kw_only=True):
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    handle_ms: int = 0  # completed segments that began in the range
    handled: int = 0
    staffed_ms: int = 0
    handling_ms: int = 0


class Aggregate(msgspec.Struct, kw_only=True):
    """Everything a report shows for [start_ms, end_ms), in summable form (a day's rollup)."""

    start_ms: int
    end_ms: int
    complete: bool = True  # the stream held the whole range when this was computed
    queues: dict[str, QueueSums] = {}
    agents: dict[str, AgentSums] = {}
    presence: dict[str, str] = {}  # each agent's presence at end_ms: where the next day starts


def add_queue(into: QueueSums, sums: QueueSums) -> None:
    """Add a queue's sums into another's (a later day's, or another queue's for the total)."""
    for name in QueueSums.__struct_fields__:
        if name == "abandon_waits_ms":
            into.abandon_waits_ms = sorted([*into.abandon_waits_ms, *sums.abandon_waits_ms])
        elif name == "arrivals":
            for minute, count in sums.arrivals.items():
                into.arrivals[minute] = into.arrivals.get(minute, 0) + count
        else:
            setattr(into, name, getattr(into, name) + getattr(sums, name))


def merge(parts: Iterable[Aggregate]) -> Aggregate:
    """Consecutive aggregates (days, runs of days) as one: counts and sums add up."""
    ordered = sorted(parts, key=lambda part: part.start_ms)
    if not ordered:
        raise ValueError("nothing to merge")
    result = Aggregate(start_ms=ordered[0].start_ms, end_ms=ordered[-1].end_ms)
    for part in ordered:
        result.complete = result.complete and part.complete
        for name, sums in part.queues.items():
            add_queue(result.queues.setdefault(name, QueueSums()), sums)
        for name, agent in part.agents.items():
            into = result.agents.setdefault(name, AgentSums())
            for f in AgentSums.__struct_fields__:
                setattr(into, f, getattr(into, f) + getattr(agent, f))
        result.presence = dict(part.presence)
    result.queues = dict(sorted(result.queues.items()))
    result.agents = dict(sorted(result.agents.items()))
    return result


# --- one pass over the stream ---


@dataclass
class _Agent:
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    handle: list[int] = field(default_factory=list)  # completed segments that began in the period
    segments: list[tuple[int, int]] = field(default_factory=list)  # handling intervals, clipped later
    presence: list[tuple[int, str]] = field(default_factory=list)


class Tally:
    """One pass over the events: contacts offered in the period and every agent's time.

    Whatever starts (a contact queued, an agent's handling) is followed until the end of
    the day after the one it started in, however long the period: so a month is exactly
    the sum of its days, and a day can be rolled up once the next one is over. It reads
    events, not Redis: a report over the archive feeds it the archived events the same way
    (`before` for the day before the period, `add` for the rest, in stream order).
    """

    def __init__(self, start_ms: int, end_ms: int, midnights: list[int], presence_at_start: dict[str, str]) -> None:
        self.start_ms, self.end_ms, self.midnights = start_ms, end_ms, midnights
        self.contacts: dict[str, Contact] = {}
        self.earlier: dict[str, int] = {}  # conversations queued the day before: followed until
        self.replaced: list[Contact] = []  # a conversation queued again after its follow-up ended
        self.agents: dict[str, _Agent] = {}
        for agent, presence in presence_at_start.items():
            self.agent(agent).presence.append((start_ms, presence))
        self.open: dict[tuple[str, str], int] = {}  # (agent, conversation) -> accepted at
        self.closed_by: dict[tuple[str, str], int] = {}  # closed, wrap-up not over yet

    def agent(self, agent: str) -> _Agent:
        return self.agents.setdefault(agent, _Agent())

    def follow_until(self, at: int) -> int:
        """The end of the day after the one holding `at` (tenant's zone)."""
        return self.midnights[min(bisect.bisect_right(self.midnights, at) + 1, len(self.midnights) - 1)]

    def before(self, event: events.StateEvent) -> None:
        """An event of the day before the period: only what is still open at its start."""
        conv = event.conversation
        if isinstance(event, events.Queued):
            self.earlier.setdefault(conv, self.follow_until(event.occurred_at))
        elif isinstance(event, events.Accepted):
            self.open[(event.agent, conv)] = event.occurred_at
        elif isinstance(event, events.WrappedUp | events.Transferred):
            self.open.pop((event.agent, conv), None)
            self.closed_by.pop((event.agent, conv), None)
        elif isinstance(event, events.Closed) and event.agent:
            self.closed_by[(event.agent, conv)] = event.occurred_at

    def _contact(self, conv: str, at: int) -> Contact | None:
        contact = self.contacts.get(conv)
        return contact if contact is not None and at < contact.follow_until else None

    def add(self, event: events.StateEvent) -> None:
        at, conv = event.occurred_at, event.conversation
        in_period = at < self.end_ms
        contact = self._contact(conv, at)
        if isinstance(event, events.Queued):
            if in_period and contact is None and self.earlier.get(conv, 0) <= at:
                if conv in self.contacts:
                    self.replaced.append(self.contacts[conv])
                self.contacts[conv] = Contact(event.queue, event.channel, at, self.follow_until(at))
        elif isinstance(event, events.Reserved):
            if in_period:
                self.agent(event.agent).offers += 1
        elif isinstance(event, events.Accepted):
            if in_period:
                self.agent(event.agent).accepted += 1
            if contact is not None and contact.waited_ms is None:
                contact.waited_ms = event.waited_ms
            self.open[(event.agent, conv)] = at
            if contact is not None:
                contact.handling += 1
        elif isinstance(event, events.Rejected | events.TimedOut):
            if in_period:
                agent = self.agent(event.agent)
                if isinstance(event, events.Rejected):
                    agent.rejected += 1
                else:
                    agent.timed_out += 1
        elif isinstance(event, events.WrappedUp | events.Transferred):
            self._end_segment(event.agent, conv, at)
        elif isinstance(event, events.Closed):
            if event.agent:
                self.closed_by[(event.agent, conv)] = at
            if contact is not None and contact.closed_at is None:
                contact.closed_at, contact.disposition = at, event.disposition
        elif isinstance(event, events.Abandoned):
            if contact is not None and contact.abandoned_ms is None:
                contact.abandoned_ms = event.waited_ms
        elif isinstance(event, events.MessageAdded):
            if contact is not None and event.direction == "out" and event.agent and contact.first_response_ms is None:
                contact.first_response_ms = at - contact.queued_at
        elif isinstance(event, events.PresenceChanged):
            if in_period:
                self.agent(event.agent).presence.append((at, event.presence))

    def _end_segment(self, agent: str, conv: str, at: int) -> None:
        began = self.open.pop((agent, conv), None)
        self.closed_by.pop((agent, conv), None)
        if began is None:
            return  # accepted before the day before the period: not ours to time
        cap = self.follow_until(began)
        record = self.agent(agent)
        record.segments.append((began, min(at, cap)))
        if at >= cap:
            return  # outlived its follow-up: in progress as far as its day's rollup knew
        if self.start_ms <= began < self.end_ms:
            record.handle.append(at - began)
        contact = self._contact(conv, at)
        if contact is not None:
            contact.handle_ms += at - began
            contact.handling -= 1

    def finish(self, read_until: int) -> None:
        """Segments still open when the reading stopped: a closed conversation's ends at its
        close (its wrap-up was cut off by the read); any other is in progress."""
        for (agent, conv), began in list(self.open.items()):
            closed = self.closed_by.get((agent, conv))
            if closed is not None:
                self._end_segment(agent, conv, closed)
            else:
                self.agent(agent).segments.append((began, min(read_until, self.follow_until(began))))

    def aggregate(self, tenant: Tenant, agent_end: int, complete: bool, decided_at: int) -> Aggregate:
        """The sums of what was read; `decided_at`: how far the reading went (a first reply still
        inside its target then is pending, not missed)."""
        targets = {queue.id: queue.sla for queue in tenant.queues}
        queues: dict[str, QueueSums] = {}
        for contact in [*self.replaced, *self.contacts.values()]:
            row = queues.setdefault(contact.queue, QueueSums())
            count(row, contact, targets.get(contact.queue), decided_at, self.start_ms // 60_000)
        queues = {name: row for name, row in queues.items() if row.offered}
        for row in queues.values():
            row.abandon_waits_ms.sort()
        agents = {name: _agent_sums(record, self.start_ms, agent_end) for name, record in sorted(self.agents.items())}
        presence = {}
        for name, record in self.agents.items():
            changes = [state for at, state in sorted(record.presence) if at < self.end_ms]
            if changes:
                presence[name] = changes[-1]
        return Aggregate(
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            complete=complete,
            queues=dict(sorted(queues.items())),
            agents=agents,
            presence=dict(sorted(presence.items())),
        )


def _staffed(presence: list[tuple[int, str]], start: int, end: int) -> list[tuple[int, int]]:
    """The intervals in [start, end) an agent spent available or busy."""
    spans, since = [], None
    for at, state in sorted(presence):
        at = max(at, start)
        if state in STAFFED and since is None:
            since = at
        elif state not in STAFFED and since is not None:
            spans.append((since, at))
            since = None
    if since is not None:
        spans.append((since, end))
    return [(a, min(b, end)) for a, b in spans if min(b, end) > a]


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _overlap(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> int:
    return sum(max(0, min(b, d) - max(a, c)) for a, b in first for c, d in second)


def _agent_sums(record: _Agent, start: int, end: int) -> AgentSums:
    staffed = _staffed(record.presence, start, end)
    handling = _union([(max(a, start), min(b, end)) for a, b in record.segments if min(b, end) > max(a, start)])
    return AgentSums(
        offers=record.offers,
        accepted=record.accepted,
        rejected=record.rejected,
        timed_out=record.timed_out,
        handle_ms=sum(record.handle),
        handled=len(record.handle),
        staffed_ms=sum(b - a for a, b in staffed),
        handling_ms=_overlap(handling, staffed),
    )


def _midnights(tenant: Tenant, first: dt.date, last: dt.date) -> list[int]:
    zone = ZoneInfo(tenant.timezone)
    days = (last - first).days + 1
    return [ms(dt.datetime.combine(first + dt.timedelta(days=n), dt.time(), zone)) for n in range(days)]


async def compute(
    store: Store,
    tenant: Tenant,
    first: dt.date,
    after: dt.date,
    *,
    now_ms: int,
    presence_at_start: dict[str, str] | None = None,
    archived: ArchivedEvents | None = None,
) -> Aggregate:
    """The aggregate of the days [first, after) from the stream (or, given `archived`, from
    the archive's copy of it): the day before is read for what was still open at the start,
    the day after for outcomes (up to now_ms)."""
    midnights = _midnights(tenant, first - dt.timedelta(days=2), after + dt.timedelta(days=3))
    start_ms, end_ms = midnights[2], midnights[-4]
    read = archived.read_events if archived is not None else functools.partial(read_events, store)
    if presence_at_start is None:
        presence_at_start = (
            await archived.presence_before(tenant.id, start_ms, PRESENCE_LOOKBACK_MS)
            if archived is not None
            else await _presence_before(store, tenant, start_ms)
        )
    tally = Tally(start_ms, end_ms, midnights, presence_at_start)
    async for event in read(tenant.id, midnights[1], start_ms):
        tally.before(event)
    read_until = min(midnights[-3], now_ms)
    async for event in read(tenant.id, start_ms, read_until):
        tally.add(event)
    tally.finish(read_until)
    if archived is not None:
        complete = await archived.complete(tenant.id, start_ms)
    else:
        complete = await _complete(store, tenant.id, start_ms)
    return tally.aggregate(tenant, max(start_ms, min(end_ms, now_ms)), complete, read_until)


class Today:
    """A tenant's figures for one day so far, kept current by reading only the events added
    since the last look: the floor and the metrics refresh every few seconds and must not
    rescan the day, and must say what the day's report says (the same tally, counted by
    router/figures.py)."""

    def __init__(self, tenant: Tenant, day: dt.date) -> None:
        self.tenant, self.day = tenant, day
        midnights = _midnights(tenant, day - dt.timedelta(days=2), day + dt.timedelta(days=3))
        self._tally = Tally(midnights[2], midnights[3], midnights, {})
        # the last events stream id read: from the day before, for what is still open at midnight
        self._last = f"{midnights[1] - 1}-{2**64 - 1}"

    async def queues(self, store: Store, now_ms: int, *, max_events: int | None = None) -> dict[str, QueueSums]:
        """Each queue's sums of the contacts queued this day, as known now. With `max_events`,
        a long day is caught up over several calls (a scrape must stay short), each reading on
        from where the last stopped."""
        tally = self._tally
        stream = Keys(self.tenant.id).events
        read = 0
        while max_events is None or read < max_events:
            rows = await store.redis.xrange(stream, min=f"({self._last}", count=PAGE)
            read += len(rows)
            for entry_id, fields in rows:  # no await in here: a cancelled call never counts a row twice
                event = decode_event(entry_id, fields)
                if event is None:
                    continue
                if int(text(entry_id).partition("-")[0]) < tally.start_ms:
                    tally.before(event)
                else:
                    tally.add(event)
            if rows:
                self._last = text(rows[-1][0])
            if len(rows) < PAGE:
                break
        return tally.aggregate(self.tenant, max(tally.start_ms, now_ms), True, now_ms).queues
