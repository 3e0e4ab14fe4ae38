"""Satisfaction on the supervisors' pages (ops/satisfaction.py's figures): the reports
page's section by queue or agent, with its charts (CSAT per row against none, the
ratings 1-5 as columns), and the floor's CSAT today per queue with the low ratings
still to follow up, which a supervisor marks done.

    POST /inbox/t/{tenant}/c/{conversation}/followed-up   (supervisors; CSRF as every form)
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from ops import satisfaction
from router import names, surveys
from router.app.inbox import charts
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.sessions import USER, require_role
from router.appkeys import STORE
from router.config import Tenant
from router.store import Store

LOW_SHOWN = 20


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _average(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


async def report_section(
    store: Store, tenant: Tenant, by: str, start: dt.datetime, end: dt.datetime
) -> tuple[satisfaction.Satisfaction, dict[str, object]]:
    """The period's figures, and what the reports page's satisfaction section shows of them."""
    figures = await satisfaction.period(store, tenant, start.date(), end.date())
    queue_names = {q.id: q.name or q.id for q in tenant.queues}
    agent_names = {a.id: a.name or a.id for a in tenant.agents}
    label = agent_names if by == "agent" else queue_names
    rows = figures.agents if by == "agent" else figures.queues
    titled = [(label.get(row.name, row.name), row) for row in rows]
    section = {
        "figures": figures,
        "rows": titled,
        "total": figures.total,
        "percent": _percent,
        "average": _average,
        "agent_names": agent_names,
        "queue_names": queue_names,
        "csat_chart": charts.shares(
            [(name, row.csat, None) for name, row in titled], describe=_percent, empty="no answers"
        ),
        "ratings_chart": charts.columns(
            ["1 poor", "2", "3", "4", "5 excellent"], ["answers"], [[n] for n in figures.total.ratings]
        ),
    }
    return figures, section


fill = satisfaction.fill  # a report's CSAT column from the figures


async def floor_today(store: Store, tenant: Tenant) -> dict[str, object]:
    """Today's CSAT per queue, and the low ratings a supervisor has yet to follow up."""
    figures = await satisfaction.today(store, tenant)
    queue_names = {q.id: q.name or q.id for q in tenant.queues}
    agent_names = {a.id: a.name or a.id for a in tenant.agents}
    low = await surveys.followups(store, tenant.id, LOW_SHOWN)
    known = await names.records(store, tenant.id, [item["customer"] for item in low])
    return {
        "queues": [
            {
                "queue": row.name,
                "name": queue_names.get(row.name, row.name),
                "csat": _percent(row.csat),
                "average": _average(row.average),
                "answered": row.answered,
                "sent": row.sent,
            }
            for row in figures.queues
        ],
        "low": [
            {
                "conversation": item["conversation"],
                "customer": names.display(known.get(item["customer"], {}), item["channel"], item["address"]),
                "rating": item["rating"],
                "comment": item["comment"],
                "queue": queue_names.get(item["queue"], item["queue"]),
                "agent": agent_names.get(item["agent"], item["agent"]),
            }
            for item in low
        ],
    }


@require_role("supervisor", "admin")
async def followed_up(request: web.Request) -> web.Response:
    """A supervisor followed a low rating up: it leaves the floor's list (and says by whom)."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    await surveys.follow_up_done(request.app[STORE], tenant.id, record["id"], request[USER].login)
    raise web.HTTPSeeOther("/inbox/floor?done=followed_up")


def routes(app: web.Application) -> None:
    app.router.add_post(CONVERSATION_PATH + "/followed-up", followed_up)
