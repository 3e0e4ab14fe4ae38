"""Dates, times, numbers and money as the reader's locale writes them (Babel's CLDR data),
at the tenant's time zone: the page templates' filters (router/templating.py installs them
bound to the page's locale):

    {{ e.at | datetime(tenant.timezone) }}     2026年12月8日 09:30:05 (zh_Hans at Asia/Shanghai)
    {{ e.at | date(tenant.timezone) }}         2026/12/8
    {{ count | number }}                        12,345
    {{ share | percent }}                       85%
    {{ amount | money("CNY") }}                 ¥120.50

Times are stored as epoch milliseconds (events.now_ms); a zone Babel does not know is UTC.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import dates, numbers


def _moment(ms: int | float | str, timezone: str) -> dt.datetime:
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return dt.datetime.fromtimestamp(float(ms) / 1000, tz=zone)


def datetime(ms: int | float | str, timezone: str, locale: str, width: str = "medium") -> str:
    """A moment (epoch ms) as date and time in `locale`, at `timezone` (the tenant's)."""
    if ms in ("", None):
        return ""
    moment = _moment(ms, timezone)
    return dates.format_datetime(moment, format=width, tzinfo=moment.tzinfo, locale=locale)


def date(ms: int | float | str, timezone: str, locale: str, width: str = "short") -> str:
    if ms in ("", None):
        return ""
    return dates.format_date(_moment(ms, timezone).date(), format=width, locale=locale)


def number(value: int | float | Decimal | str, locale: str) -> str:
    return numbers.format_decimal(Decimal(str(value)), locale=locale)


def percent(share: float | Decimal | str, locale: str) -> str:
    """A share (0.85) as a percentage (85%)."""
    return numbers.format_percent(Decimal(str(share)), locale=locale)


def money(amount: int | float | Decimal | str, currency: str, locale: str) -> str:
    """An amount in a currency (ISO 4217), with the locale's symbol and separators."""
    return numbers.format_currency(Decimal(str(amount)), currency, locale=locale)
