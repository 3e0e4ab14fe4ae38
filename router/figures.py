"""One definition of each contact figure. The reports (ops/aggregates.py, ops/reports.py), the
supervisors' floor, the metrics and the reports over the archive all count through here, so
the floor and the report say the same for the same day. docs/operations.md#definitions sets
them beside the industry's.

A contact counts in the period it was queued in (its first `queued` event, in the queue it
entered first), and is followed to its outcome until the end of the next day:
- offered: queued in the period; a call that became a callback or a voicemail before an
  agent took it is not (it goes on as that contact);
- handled: offered, and taken by an agent (accepted), not abandoned;
- abandoned: offered, and the customer left before an agent took it; a short abandon left
  within `short_abandon_s` (5 s by default);
- answered in target: handled, and answered (the accept; the first reply on a
  `first_response` queue) within the queue's target;
- pending: handled on a `first_response` queue, not replied to yet, its target not passed:
  neither met nor missed yet, so left out of service level until it is. Counted as missed
  before, a report read at noon showed every email of the morning, still inside its 24 h
  target, as failed;
- service level: answered in target / (handled + abandoned - pending); without short
  abandons: the short abandons also left out of the denominator; abandons in target
  neutral: the abandons within the target left out instead (they had no chance to be met);
- ASA: summed wait to accept / handled; AHT: summed handling (accept to the end of
  wrap-up) / handled contacts whose handling ended; abandon rate: abandoned / offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from router.config.routing import ServiceLevel

TEXT_CHANNELS = frozenset({"sms", "email", "fax", "webchat", "telegram"})
# A call closed this way goes on as another contact (the callback, the voicemail):
# it is neither offered twice nor abandoned.
REPLACED = frozenset({"callback_requested", "voicemail"})
SHORT_ABANDON_S = 5.0


class QueueSums(msgspec.Struct, kw_only=True):
    """A queue's contact figures as counts and summed durations (ms), so that the sums of
    several days are the sums of their period; averages and ratios come at the end (`rates`)."""

    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    answered_in_target: int = 0
    abandoned_in_target: int = 0  # abandons before the queue's target passed (the neutral variant)
    pending: int = 0  # handled, first reply still due and its target not passed (left out of service level)
    wait_ms: int = 0  # summed over the handled
    handle_ms: int = 0
    handle_count: int = 0  # handled contacts whose handling ended (what AHT averages)
    first_response_ms: int = 0
    first_responses: int = 0
    resolution_ms: int = 0
    resolutions: int = 0
    abandon_waits_ms: list[int] = []  # each abandon's wait: any short-abandon threshold applies later
    arrivals: dict[int, int] = {}  # minute since the epoch -> contacts offered then


@dataclass
class Contact:
    """What is known of one offered contact, as its events are read."""

    queue: str
    channel: str
    queued_at: int
    follow_until: int  # events after this are not this contact's any more
    waited_ms: int | None = None  # until the first accept
    abandoned_ms: int | None = None
    first_response_ms: int | None = None
    closed_at: int | None = None
    disposition: str = ""
    handle_ms: int = 0
    handling: int = 0  # agent segments still open


def count(row: QueueSums, contact: Contact, sla: ServiceLevel | None, decided_at: int, first_minute: int) -> None:
    """Add one contact to its queue's sums, as known at `decided_at` (now, or the end of its
    follow-up). `first_minute`: arrivals before the period's start count in its first minute."""
    if contact.disposition in REPLACED and contact.waited_ms is None:
        return
    row.offered += 1
    minute = max(contact.queued_at // 60_000, first_minute)
    row.arrivals[minute] = row.arrivals.get(minute, 0) + 1
    target_ms = sla.seconds * 1000 if sla else None
    if contact.abandoned_ms is not None:
        row.abandoned += 1
        row.abandon_waits_ms.append(contact.abandoned_ms)
        if target_ms is not None and contact.abandoned_ms <= target_ms:
            row.abandoned_in_target += 1
    elif contact.waited_ms is not None:
        row.handled += 1
        row.wait_ms += contact.waited_ms
        if contact.handling == 0 and contact.handle_ms:
            row.handle_ms += contact.handle_ms
            row.handle_count += 1
        by_reply = sla is not None and sla.measure == "first_response"
        measured = contact.first_response_ms if by_reply else contact.waited_ms
        if target_ms is not None and measured is not None and measured <= target_ms:
            row.answered_in_target += 1
        elif by_reply and measured is None and target_ms is not None:
            due = contact.queued_at + target_ms
            if due > decided_at and decided_at < contact.follow_until:
                row.pending += 1  # still inside its target: not missed (yet)
    if contact.channel in TEXT_CHANNELS:
        if contact.first_response_ms is not None:
            row.first_response_ms += contact.first_response_ms
            row.first_responses += 1
        if contact.closed_at is not None and contact.abandoned_ms is None:
            row.resolution_ms += contact.closed_at - contact.queued_at
            row.resolutions += 1


class Rates(msgspec.Struct, kw_only=True):
    """A queue's averages and ratios (None where there is nothing to divide by)."""

    short_abandoned: int
    service_level: float | None
    service_level_no_short: float | None
    service_level_abandons_neutral: float | None
    asa_s: float | None
    abandon_rate: float | None
    aht_s: float | None
    first_response_s: float | None
    resolution_s: float | None


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def rates(sums: QueueSums, short_abandon_s: float = SHORT_ABANDON_S) -> Rates:
    short = sum(1 for waited in sums.abandon_waits_ms if waited < short_abandon_s * 1000)
    decided = sums.handled + sums.abandoned - sums.pending
    return Rates(
        short_abandoned=short,
        service_level=ratio(sums.answered_in_target, decided),
        service_level_no_short=ratio(sums.answered_in_target, decided - short),
        service_level_abandons_neutral=ratio(sums.answered_in_target, decided - sums.abandoned_in_target),
        asa_s=ratio(sums.wait_ms / 1000, sums.handled),
        abandon_rate=ratio(sums.abandoned, sums.offered),
        aht_s=ratio(sums.handle_ms / 1000, sums.handle_count),
        first_response_s=ratio(sums.first_response_ms / 1000, sums.first_responses),
        resolution_s=ratio(sums.resolution_ms / 1000, sums.resolutions),
    )
