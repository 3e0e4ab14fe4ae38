"""Business hours per tenant or queue, in the tenant's time zone."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _parse_ranges(text: str) -> list[tuple[dt.time, dt.time]]:
    """'08:00-12:00, 13:00-18:00' -> time ranges; '' or 'closed' -> none."""
    if text.strip().lower() in ("", "closed"):
        return []
    ranges = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise ValueError(f"expected 'HH:MM-HH:MM', got {part.strip()!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        end = dt.time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else dt.time(h2, m2)
        ranges.append((dt.time(h1, m1), end))
    return ranges


class BusinessHours(msgspec.Struct, forbid_unknown_fields=True):
    """Opening hours per weekday, e.g. mon = "08:00-20:00"; a missing day is closed."""

    timezone: str = "UTC"
    mon: str = ""
    tue: str = ""
    wed: str = ""
    thu: str = ""
    fri: str = ""
    sat: str = ""
    sun: str = ""
    holidays: list[str] = []  # ISO dates closed all day

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        for day in DAYS:
            _parse_ranges(getattr(self, day))
        for holiday in self.holidays:
            dt.date.fromisoformat(holiday)

    def is_open(self, when: dt.datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.timezone))
        if local.date().isoformat() in self.holidays:
            return False
        ranges = _parse_ranges(getattr(self, DAYS[local.weekday()]))
        return any(start <= local.time() <= end for start, end in ranges)
