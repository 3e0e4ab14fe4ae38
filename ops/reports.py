"""Reports per tenant, queue and agent for a day, week or month, from the events stream.

Two kinds of figures, each counted the way operators compare them:
- contact figures (offered, handled, abandoned, service level, ASA, AHT, first
  response and resolution times) follow the contacts offered in the period (their
  `queued` event falls in it), each to its outcome, even if that came up to
  FOLLOW_UP_MS after the period ended; a contact stays with the queue it entered
  first, whatever transfers and overflows did later;
- agent figures (offers, accepts, staffed time, occupancy) count what happened in
  the period, clipped to it.

Periods are calendar days, ISO weeks (Monday first) and months in the tenant's time
zone. A report covers what the stream still holds: for monthly reports keep more
than a month (CONTACTROUTER_STREAM_KEEP_HOURS); `complete` says whether it does.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import IO, Literal
from zoneinfo import ZoneInfo

import msgspec

from router import events
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

Period = Literal["day", "week", "month"]
PERIODS: tuple[str, ...] = ("day", "week", "month")
TEXT_CHANNELS = frozenset({"sms", "email", "fax", "webchat", "telegram"})
# A call closed this way goes on as another contact (the callback, the voicemail):
# it is neither offered twice nor abandoned.
REPLACED = frozenset({"callback_requested", "voicemail"})
STAFFED = frozenset({"available", "busy"})
PAGE = 1000  # stream entries per read
FOLLOW_UP_MS = 24 * 3600 * 1000
PRESENCE_LOOKBACK_MS = 7 * 24 * 3600 * 1000  # how far back an agent's presence at the start is looked for
SHORT_ABANDON_S = 5.0


class QueueRow(msgspec.Struct, kw_only=True):
    """Contact figures of one queue (or of the whole tenant: queue "*")."""

    queue: str
    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answered_in_target: int = 0
    service_level: float | None = None  # answered in target / (handled + abandoned)
    service_level_no_short: float | None = None  # the same without the short abandons
    asa_s: float | None = None
    abandon_rate: float | None = None  # abandoned / offered
    aht_s: float | None = None
    first_response_s: float | None = None  # text channels
    resolution_s: float | None = None  # text channels
    occupancy: float | None = None  # the tenant's row only: queues share their agents
    csat: float | None = None  # no survey results are recorded yet


class AgentRow(msgspec.Struct, kw_only=True):
    agent: str
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    aht_s: float | None = None
    staffed_s: float = 0.0  # available or busy
    handling_s: float = 0.0  # with at least one contact in hand while staffed
    occupancy: float | None = None


class Report(msgspec.Struct, kw_only=True):
    tenant: str
    period: str
    start: dt.datetime
    end: dt.datetime
    complete: bool  # the stream still held the whole period
    total: QueueRow
    queues: list[QueueRow]
    agents: list[AgentRow]


def period_bounds(tenant: Tenant, period: str, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The period holding `day`, as midnights in the tenant's time zone."""
    if period == "day":
        first, after = day, day + dt.timedelta(days=1)
    elif period == "week":
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    zone = ZoneInfo(tenant.timezone)
    return dt.datetime.combine(first, dt.time(), zone), dt.datetime.combine(after, dt.time(), zone)


def _ms(when: dt.datetime) -> int:
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


@dataclass
class _Contact:
    queue: str
    channel: str
    queued_at: int
    waited_ms: int | None = None  # until the first accept
    abandoned_ms: int | None = None
    first_response_ms: int | None = None
    closed_at: int | None = None
    disposition: str = ""
    handle_ms: int = 0
    handling: int = 0  # agent segments still open


@dataclass
class _Agent:
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    handle: list[int] = field(default_factory=list)  # completed segments that began in the period
    segments: list[tuple[int, int]] = field(default_factory=list)  # handling intervals, clipped later
    presence: list[tuple[int, str]] = field(default_factory=list)


class _Tally:
    """One pass over the events: contacts offered in the period and every agent's time."""

    def __init__(self, start_ms: int, end_ms: int, presence_at_start: dict[str, str]) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms
        self.contacts: dict[str, _Contact] = {}
        self.agents: dict[str, _Agent] = {}
        for agent, presence in presence_at_start.items():
            self.agent(agent).presence.append((start_ms, presence))
        self.open: dict[tuple[str, str], int] = {}  # (agent, conversation) -> accepted at
        self.closed_by: dict[tuple[str, str], int] = {}  # closed, wrap-up not over yet

    def agent(self, agent: str) -> _Agent:
        return self.agents.setdefault(agent, _Agent())

    def add(self, event: events.StateEvent) -> None:
        at, conv = event.occurred_at, event.conversation
        in_period = at < self.end_ms
        contact = self.contacts.get(conv)
        if isinstance(event, events.Queued):
            if in_period and conv not in self.contacts:
                self.contacts[conv] = _Contact(event.queue, event.channel, at)
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
        elif isinstance(event, events.WrappedUp):
            self._end_segment(event.agent, conv, at)
        elif isinstance(event, events.Transferred):
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
            return  # accepted before the period: not ours to time
        record = self.agent(agent)
        record.segments.append((began, at))
        if self.start_ms <= began < self.end_ms:
            record.handle.append(at - began)
        contact = self.contacts.get(conv)
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
                self.agent(agent).segments.append((began, read_until))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _queue_row(name: str, contacts: Iterable[_Contact], tenant: Tenant, short_abandon_s: float) -> QueueRow:
    row = QueueRow(queue=name)
    targets = {queue.id: queue.sla for queue in tenant.queues}
    waits, handles, responses, resolutions = [], [], [], []
    for contact in contacts:
        if contact.disposition in REPLACED and contact.waited_ms is None:
            continue
        row.offered += 1
        sla = targets.get(contact.queue)
        if contact.abandoned_ms is not None:
            row.abandoned += 1
            row.short_abandoned += contact.abandoned_ms < short_abandon_s * 1000
        elif contact.waited_ms is not None:
            row.handled += 1
            waits.append(contact.waited_ms / 1000)
            if contact.handling == 0 and contact.handle_ms:
                handles.append(contact.handle_ms / 1000)
            measured = contact.first_response_ms if sla and sla.measure == "first_response" else contact.waited_ms
            if sla and measured is not None and measured <= sla.seconds * 1000:
                row.answered_in_target += 1
        if contact.channel in TEXT_CHANNELS:
            if contact.first_response_ms is not None:
                responses.append(contact.first_response_ms / 1000)
            if contact.closed_at is not None and contact.abandoned_ms is None:
                resolutions.append((contact.closed_at - contact.queued_at) / 1000)
    row.service_level = _ratio(row.answered_in_target, row.handled + row.abandoned)
    row.service_level_no_short = _ratio(row.answered_in_target, row.handled + row.abandoned - row.short_abandoned)
    row.abandon_rate = _ratio(row.abandoned, row.offered)
    row.asa_s, row.aht_s = _mean(waits), _mean(handles)
    row.first_response_s, row.resolution_s = _mean(responses), _mean(resolutions)
    return row


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


def _agent_row(name: str, record: _Agent, start: int, end: int) -> AgentRow:
    staffed = _staffed(record.presence, start, end)
    handling = _union([(max(a, start), min(b, end)) for a, b in record.segments if min(b, end) > max(a, start)])
    staffed_ms = sum(b - a for a, b in staffed)
    handling_ms = _overlap(handling, staffed)
    return AgentRow(
        agent=name,
        offers=record.offers,
        accepted=record.accepted,
        rejected=record.rejected,
        timed_out=record.timed_out,
        aht_s=_mean([ms / 1000 for ms in record.handle]),
        staffed_s=staffed_ms / 1000,
        handling_s=handling_ms / 1000,
        occupancy=_ratio(handling_ms, staffed_ms),
    )


async def _tally(store: Store, tenant: Tenant, start_ms: int, end_ms: int, now_ms: int) -> tuple[_Tally, int]:
    tally = _Tally(start_ms, end_ms, await _presence_before(store, tenant, start_ms))
    read_until = min(end_ms + FOLLOW_UP_MS, now_ms)
    async for event in read_events(store, tenant.id, start_ms, read_until):
        tally.add(event)
    tally.finish(read_until)
    return tally, read_until


async def report(
    store: Store,
    tenant: Tenant,
    period: str,
    day: dt.date,
    *,
    short_abandon_s: float = SHORT_ABANDON_S,
    now_ms: int | None = None,
) -> Report:
    start, end = period_bounds(tenant, period, day)
    start_ms, end_ms = _ms(start), _ms(end)
    now_ms = events.now_ms() if now_ms is None else now_ms
    tally, _read_until = await _tally(store, tenant, start_ms, end_ms, now_ms)
    contacts = list(tally.contacts.values())
    queues = [
        _queue_row(queue.id, [c for c in contacts if c.queue == queue.id], tenant, short_abandon_s)
        for queue in tenant.queues
    ]
    agent_end = min(end_ms, now_ms)
    known = [a.id for a in tenant.agents]
    names = known + sorted(set(tally.agents) - set(known))
    agents = [_agent_row(name, tally.agents.get(name, _Agent()), start_ms, agent_end) for name in names]
    total = _queue_row("*", contacts, tenant, short_abandon_s)
    staffed = sum(a.staffed_s for a in agents)
    total.occupancy = _ratio(sum(a.handling_s for a in agents), staffed)
    return Report(
        tenant=tenant.id,
        period=period,
        start=start,
        end=end,
        complete=await _complete(store, tenant.id, start_ms),
        total=total,
        queues=queues,
        agents=agents,
    )


class Arrivals(msgspec.Struct, frozen=True):
    """A queue's contacts per interval of a day, and its handle time that day."""

    counts: list[tuple[dt.datetime, int]]
    aht_s: float
    handled: int  # contacts the handle time is the average of


async def arrivals(store: Store, tenant: Tenant, queue: str, day: dt.date, interval_minutes: int) -> Arrivals:
    start, end = period_bounds(tenant, "day", day)
    start_ms, end_ms = _ms(start), _ms(end)
    tally, _ = await _tally(store, tenant, start_ms, end_ms, events.now_ms())
    step_ms = interval_minutes * 60_000
    counts = [0] * -(-(end_ms - start_ms) // step_ms)  # a day of 23 or 25 hours has fewer or more
    handles = []
    for contact in tally.contacts.values():
        if contact.queue != queue or (contact.disposition in REPLACED and contact.waited_ms is None):
            continue
        counts[(contact.queued_at - start_ms) // step_ms] += 1
        if contact.waited_ms is not None and contact.handling == 0 and contact.handle_ms:
            handles.append(contact.handle_ms / 1000)
    zone = ZoneInfo(tenant.timezone)
    starts = [dt.datetime.fromtimestamp((start_ms + i * step_ms) / 1000, zone) for i in range(len(counts))]
    return Arrivals(list(zip(starts, counts, strict=True)), _mean(handles) or 0.0, len(handles))


QUEUE_COLUMNS = [f for f in QueueRow.__struct_fields__]
AGENT_COLUMNS = [f for f in AgentRow.__struct_fields__]


def _cell(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else ("" if value is None else value)


def write_csv(path: str, result: Report, by: str) -> int:
    """The report's rows as CSV (queues with the tenant's total, or agents); returns rows written."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        return write_csv_rows(handle, result, by)


def write_csv_rows(handle: IO[str], result: Report, by: str) -> int:
    """The same CSV into an open text file (a StringIO for the inbox's download)."""
    if by == "agent":
        columns, rows = AGENT_COLUMNS, result.agents
    else:
        columns, rows = QUEUE_COLUMNS, [*result.queues, result.total]
    writer = csv.writer(handle)
    writer.writerow(["tenant", "period", "start", "end", *columns])
    for row in rows:
        values = [_cell(getattr(row, c)) for c in columns]
        writer.writerow([result.tenant, result.period, result.start.isoformat(), result.end.isoformat(), *values])
    return len(rows)
