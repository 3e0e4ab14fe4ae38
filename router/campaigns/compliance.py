"""The rules every campaign message passes before it may go: pure functions.

- Send windows are in the recipient's local time: every zone the phone number may be in
  (phonenumbers.timezone), narrowed by the file's time zone column when it names one of
  them (and joined by it when it contradicts them); a message goes only at an instant
  inside the window in *all* of them, across DST changes.
- Frequency caps: no more than `max` attempts within any `days` window per debt (or
  address), and none for `quiet_days` after a conversation about it.
Suppression (the channel's opt-outs, the do-not-contact list, open disputes) is
checked by the send script (router/lua/campaigns/send.lua) in the same step as the
send, so an opt-out is honoured at once, even for a batch already claimed. Every rule
is judged again when the dispatcher takes a message's send lease
(router/lua/campaigns/begin_send.lua, workers/campaigns/gate.py); for the window this
module gives it the span around that moment that is inside it (open_span).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

from router.campaigns.model import DAYS, Cap, Window
from router.errors import ContactRouterError

DAY_MS = 86_400_000
# Every campaign attempt is kept at least this long (longer for a campaign with a longer cap),
# so a campaign that caps a channel sees what campaigns without that cap sent.
HISTORY_DAYS = 31
HORIZON = dt.timedelta(days=15)  # a window that never opens within this is none at all
UNKNOWN_ZONE = "Etc/Unknown"
# How far on either side of the moment a message is judged its window span reaches:
# far more than the moment between judging and taking the send's lease.
SPAN_REACH = dt.timedelta(minutes=10)


class NoWindow(ContactRouterError, ValueError):
    """A recipient who can never be contacted inside the window (their possible time
    zones share no allowed hour)."""


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def phone_zones(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """Every time zone a phone number may be in ("" none known)."""
    return tuple(z for z in phone_timezones.time_zones_for_number(number) if z != UNKNOWN_ZONE)


def zones_for(phone: str, explicit: str, fallback: str, known: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The time zones a recipient may be in: the phone number's (all of them, when a number
    spans several; `known` when the import worked them out), narrowed to the explicit one
    (the file's column) when it is one of them. An explicit zone that contradicts the
    number's region never widens the window: the message goes only when it is open there
    and in every zone of the region. Without either, the fallback (the tenant's)."""
    region = known
    if not region and phone:
        try:
            region = phone_zones(phonenumbers.parse(phone))
        except phonenumbers.NumberParseException:
            region = ()
    if explicit:
        return (explicit,) if not region or explicit in region else (explicit, *region)
    return region or (fallback,)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _allowed_in(when: dt.datetime, zone: str, window: Window) -> bool:
    local = when.astimezone(_zone(zone))
    if DAYS[local.weekday()] not in window.days:
        return False
    second = local.hour * 3600 + local.minute * 60 + local.second
    return _minutes(window.start) * 60 <= second < _minutes(window.end) * 60


def allowed(when: dt.datetime, zones: Sequence[str], window: Window) -> bool:
    """Whether `when` (an aware instant) is inside the window in every one of the zones."""
    return all(_allowed_in(when, zone, window) for zone in zones)


def _next_in(when: dt.datetime, zone: str, window: Window) -> dt.datetime | None:
    """The first instant at or after `when` inside the window in one zone."""
    if _allowed_in(when, zone, window):
        return when
    tz = _zone(zone)
    local = when.astimezone(tz)
    start = _minutes(window.start)
    for days in range(9):
        date = local.date() + dt.timedelta(days=days)
        if DAYS[date.weekday()] not in window.days:
            continue
        opening = dt.datetime.combine(date, dt.time(start // 60, start % 60), tzinfo=tz)
        # In a spring-forward gap the wall time does not exist; zoneinfo reads it with
        # the earlier offset, an instant just after the gap, and the check below says
        # whether that is still inside the window.
        candidate = opening.astimezone(dt.UTC)
        if candidate >= when and _allowed_in(candidate, zone, window):
            return candidate
    return None


def open_span(
    when: dt.datetime, zones: Sequence[str], window: Window, reach: dt.timedelta = SPAN_REACH
) -> tuple[dt.datetime, dt.datetime] | None:
    """The stretch of time around `when` (an aware instant) that is inside the window in
    every zone, as (from, until), reaching at most `reach` either way; None when `when`
    is outside the window.

    The window's edges are whole local minutes and every zone's offset today is a whole
    number of minutes, so whether an instant is inside changes only at a whole UTC minute:
    an instant inside makes its whole minute inside, and each minute on either side is
    checked by its first instant. So (from, until) never reaches past an edge, across DST
    changes too, and an instant compared with it later (on Redis's clock, when the send's
    lease is taken) is inside the window exactly when it falls within it."""
    if not allowed(when, zones, window):
        return None
    minute = when.astimezone(dt.UTC).replace(second=0, microsecond=0)
    step = dt.timedelta(minutes=1)
    start, end = minute, minute + step
    while end - minute < reach and allowed(end, zones, window):
        end += step
    while minute - start < reach and allowed(start - step, zones, window):
        start -= step
    return start, end


def next_allowed(when: dt.datetime, zones: Sequence[str], window: Window) -> dt.datetime:
    """The first instant at or after `when` inside the window in every zone; NoWindow
    when the zones share no allowed hour."""
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    candidate = when
    while candidate - when <= HORIZON:
        nexts = [_next_in(candidate, zone, window) for zone in zones]
        if any(n is None for n in nexts):
            break
        latest = max(n for n in nexts if n is not None)
        if latest == candidate:  # every zone allows it
            return candidate
        candidate = latest
    raise NoWindow(f"no instant inside {window.start}-{window.end} in all of {', '.join(zones)}")


def cap_allows_at(attempts_ms: Sequence[int], talked_ms: int, now_ms: int, cap: Cap) -> int:
    """The first time (ms, at or after now) an attempt may be made under the cap:
    fewer than `max` attempts in the `days` before it, and `quiet_days` past the
    last conversation (talked_ms, 0 for none)."""
    window = int(cap.days * DAY_MS)
    quiet = int(cap.quiet_days * DAY_MS)
    at = now_ms
    if talked_ms and quiet and at < talked_ms + quiet:
        at = talked_ms + quiet
    # An attempt at `a` counts against the window ending at t while t - a < window.
    recent = sorted(a for a in attempts_ms if at - a < window)
    if len(recent) >= cap.max:
        at = max(at, recent[len(recent) - cap.max] + window)
    return at


def caps_allow_at(caps: Sequence[Cap], channel: str, attempts_ms: Sequence[int], talked_ms: int, now_ms: int) -> int:
    """The first time (ms, at or after now) an attempt on `channel` satisfies every cap on
    that channel (the campaign's `[[caps]]` and, for collections calls, the legal one)."""
    at = now_ms
    for cap in caps:
        if cap.channel == channel:
            at = max(at, cap_allows_at(attempts_ms, talked_ms, now_ms, cap))
    return at


def cap_subject(kind: str, channel: str, address: str, fields: dict[str, str], debt_field: str) -> str:
    """Whose attempts a cap counts: the debt for collections (Regulation F counts per
    debt), else the address."""
    debt = fields.get(debt_field, "") if kind == "collections" else ""
    return f"debt:{debt}" if debt else f"addr:{address}"


def attempts_subject(kind: str, subject: str) -> str:
    """Whose attempts a kind's caps count together (the key under keys.contact_attempts):
    collections per debt or address, whatever the campaign (Regulation F counts the
    collector's calls); other kinds by kind as well, so marketing texts never use up
    a notice's allowance or the other way round."""
    return subject if kind == "collections" else f"{kind}:{subject}"
