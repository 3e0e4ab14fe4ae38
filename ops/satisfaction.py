"""Satisfaction figures per tenant, queue and agent for a run of days: CSAT (the share of
answers rating 4 or 5), the average rating, the response rate and the comments.

The survey scripts count as they go (router/surveys.py): each survey counts on the day
it was sent, in the tenant's time zone, in that day's hash (Keys.survey_day) under its
queue ("q:<queue>:<figure>") and its agent ("a:<agent>:<figure>"): sent, answered, sum
(of the ratings), good (4 and 5), r1..r5 and comments. A period is the sum of its days,
so a week or a month needs no events stream and nothing to roll up. The comments come
from their own capped stream (Keys.survey_comments).

Reports (ops/reports.py, the CLI, the reports page, the floor) read these through
`period`, `today` and `fill`.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec

from ops.reports import Report
from router import events
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

FIGURES = ("sent", "answered", "sum", "good", "comments", "r1", "r2", "r3", "r4", "r5")
COMMENTS_SHOWN = 50


class Row(msgspec.Struct, kw_only=True):
    """The survey figures of a queue, an agent, or the tenant ("*")."""

    name: str
    sent: int = 0
    answered: int = 0
    sum: int = 0
    good: int = 0  # ratings of 4 or 5
    comments: int = 0
    ratings: list[int] = msgspec.field(default_factory=lambda: [0] * 5)  # how many of each, 1 to 5

    @property
    def csat(self) -> float | None:
        """The share of answers rating 4 or 5 (None without an answer)."""
        return self.good / self.answered if self.answered else None

    @property
    def average(self) -> float | None:
        return self.sum / self.answered if self.answered else None

    @property
    def response_rate(self) -> float | None:
        return self.answered / self.sent if self.sent else None

    def add(self, figure: str, count: int) -> None:
        if figure.startswith("r") and figure[1:].isdigit() and 1 <= int(figure[1:]) <= 5:
            self.ratings[int(figure[1:]) - 1] += count
        elif figure in FIGURES:
            setattr(self, figure, getattr(self, figure) + count)


class Comment(msgspec.Struct, frozen=True, kw_only=True):
    conversation: str
    queue: str
    agent: str
    rating: int
    comment: str
    day: str
    at: int  # when it came (ms)


class Satisfaction(msgspec.Struct, kw_only=True):
    tenant: str
    first: dt.date
    after: dt.date  # the day after the last
    total: Row
    queues: list[Row]
    agents: list[Row]
    comments: list[Comment] = []  # newest first, at most COMMENTS_SHOWN


def _rows(names: list[str], found: dict[str, Row]) -> list[Row]:
    """A row for each configured name, in the configuration's order, then any other found."""
    return [found.get(n) or Row(name=n) for n in names] + [found[n] for n in sorted(set(found) - set(names))]


async def period(
    store: Store, tenant: Tenant, first: dt.date, after: dt.date, *, comments: bool = True
) -> Satisfaction:
    """The figures of the surveys sent on the days [first, after)."""
    keys = Keys(tenant.id)
    days = [first + dt.timedelta(days=n) for n in range((after - first).days)]
    queues: dict[str, Row] = {}
    agents: dict[str, Row] = {}
    async with store.redis.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hgetall(keys.survey_day(day.isoformat()))
        per_day = await pipe.execute()
    for counts in per_day:
        for field, value in counts.items():
            kind, _, rest = text(field).partition(":")
            name, _, figure = rest.rpartition(":")
            table = queues if kind == "q" else agents if kind == "a" else None
            if table is None or not name:
                continue
            table.setdefault(name, Row(name=name)).add(figure, int(value))
    total = Row(name="*")
    for row in queues.values():
        for figure in ("sent", "answered", "sum", "good", "comments"):
            setattr(total, figure, getattr(total, figure) + getattr(row, figure))
        total.ratings = [a + b for a, b in zip(total.ratings, row.ratings, strict=True)]
    return Satisfaction(
        tenant=tenant.id,
        first=first,
        after=after,
        total=total,
        queues=_rows([q.id for q in tenant.queues], queues),
        agents=_rows([a.id for a in tenant.agents], agents),
        comments=await _comments(store, tenant, first, after) if comments else [],
    )


async def _comments(store: Store, tenant: Tenant, first: dt.date, after: dt.date) -> list[Comment]:
    """The newest comments on surveys sent in the period."""
    lowest, highest = first.isoformat(), (after - dt.timedelta(days=1)).isoformat()
    found: list[Comment] = []
    for entry_id, fields in await store.redis.xrevrange(Keys(tenant.id).survey_comments, count=10_000):
        values = {text(k): text(v) for k, v in fields.items()}
        if not lowest <= values.get("day", "") <= highest:
            continue
        found.append(
            Comment(
                conversation=values.get("conversation", ""),
                queue=values.get("queue", ""),
                agent=values.get("agent", ""),
                rating=int(values.get("rating") or 0),
                comment=values.get("comment", ""),
                day=values["day"],
                at=int(text(entry_id).partition("-")[0]),
            )
        )
        if len(found) >= COMMENTS_SHOWN:
            break
    return found


async def today(store: Store, tenant: Tenant) -> Satisfaction:
    """Today's figures (the surveys sent since the tenant's local midnight), without comments."""
    day = dt.datetime.fromtimestamp(events.now_ms() / 1000, ZoneInfo(tenant.timezone)).date()
    return await period(store, tenant, day, day + dt.timedelta(days=1), comments=False)


def fill(report: Report, figures: Satisfaction) -> None:
    """Write the CSAT into a report's queue rows and total (its `csat` column)."""
    by_queue = {row.name: row for row in figures.queues}
    for row in report.queues:
        found = by_queue.get(row.queue)
        row.csat = found.csat if found else None
    report.total.csat = figures.total.csat


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _avg(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def lines(figures: Satisfaction, by: str, names: dict[str, str] | None = None) -> list[str]:
    """The figures as the CLI prints them: a table by queue (with the total) or by agent."""
    names = names or {}
    if not figures.total.sent:
        return ["CSAT: no survey was sent in this period"]
    rows = figures.agents if by == "agent" else [*figures.queues, figures.total]
    out = [f"{by:<14}{'sent':>6}{'answered':>9}{'response':>9}{'CSAT':>8}{'average':>8}{'comments':>9}"]
    for row in rows:
        label = "all" if row.name == "*" else names.get(row.name, row.name)
        out.append(
            f"{label:<14}{row.sent:>6}{row.answered:>9}{_pct(row.response_rate):>9}{_pct(row.csat):>8}"
            f"{_avg(row.average):>8}{row.comments:>9}"
        )
    for item in figures.comments[:10]:
        out.append(f"  {item.rating}/5 {item.queue} {names.get(item.agent, item.agent)}: {item.comment}")
    return out
