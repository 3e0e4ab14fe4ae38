"""Dates, times, numbers and money in the reader's locale and the tenant's time zone."""

from __future__ import annotations

import datetime as dt

from router import formats
from router.templating import pages

# 2026-12-08 01:30:05 UTC: 09:30 in Shanghai and Hong Kong, still the 7th in New York
MOMENT = int(dt.datetime(2026, 12, 8, 1, 30, 5, tzinfo=dt.UTC).timestamp() * 1000)


def test_a_moment_is_written_at_the_tenants_zone_the_readers_way() -> None:
    assert formats.datetime(MOMENT, "Asia/Shanghai", "zh_Hans") == "2026年12月8日 09:30:05"
    assert formats.datetime(MOMENT, "Asia/Hong_Kong", "zh_Hant") == "2026年12月8日 上午9:30:05"
    assert formats.datetime(MOMENT, "Asia/Shanghai", "en") == "Dec 8, 2026, 9:30:05\u202fAM"
    assert formats.date(MOMENT, "America/New_York", "en") == "12/7/26"
    assert formats.datetime(MOMENT, "Not/AZone", "en") == "Dec 8, 2026, 1:30:05\u202fAM"  # unknown zone: UTC
    assert formats.datetime("", "UTC", "en") == ""


def test_numbers_shares_and_money_in_the_locale() -> None:
    assert formats.number(1234567.5, "zh_Hans") == "1,234,567.5"
    assert formats.percent(0.853, "zh_Hant") == "85%"
    assert formats.money("120.5", "CNY", "zh_Hans") == "¥120.50"
    assert formats.money("120.5", "CNY", "en") == "CN¥120.50"
    assert formats.money(99, "HKD", "zh_Hant") == "HK$99.00"


def test_the_page_filters_are_bound_to_the_pages_locale() -> None:
    template = pages("zh_Hans").from_string("{{ at | datetime('Asia/Shanghai') }} · {{ amount | money('CNY') }}")
    assert template.render(at=MOMENT, amount=12345) == "2026年12月8日 09:30:05 · ¥12,345.00"
