"""Contacts deflected by help articles in the reports: the customers' "this answered my
question", counted per local date, summed over the report's period and nothing outside it."""

from __future__ import annotations

import datetime as dt

from ops import reports
from router.knowledge import articles
from tests.router.knowledge.factories import kb_world, published


async def test_a_weeks_report_counts_the_deflections_of_its_days_only() -> None:
    w = await kb_world()
    article = await published(w, "Paying by card", "Use any card.", category="billing")
    votes = {"2026-11-29": 4, "2026-11-30": 2, "2026-12-02": 1, "2026-12-06": 3, "2026-12-07": 5}  # Sun..Mon
    for day, count in votes.items():
        for _ in range(count):
            await articles.record_helped(w.store, "acme", article.id, day)
    week = await reports.report(w.store, w.tenant, "week", dt.date(2026, 12, 2))
    assert week.deflected == 2 + 1 + 3  # Monday 30 November to Sunday 6 December, by hand
    day = await reports.report(w.store, w.tenant, "day", dt.date(2026, 12, 7))
    assert day.deflected == 5
    other = await reports.report(w.store, w.deployment.tenant("globex"), "week", dt.date(2026, 12, 2))
    assert other.deflected == 0
