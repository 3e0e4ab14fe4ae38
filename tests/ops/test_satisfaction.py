"""Satisfaction figures against a hand count: surveys sent and answered through the real
flow (close, timer, answer), then the figures by queue, by agent and in total, as the
CLI prints them and as the report's CSAT column carries them."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from ops import cli, reports, satisfaction
from router import agents, surveys
from tests.factories import World, world

TENANT = """
[[tenants]]
id = "acme"
timezone = "Asia/Shanghai"
survey = { channels = ["sms"] }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
name = "Amy Pond"
skills = { support = 1 }

[[tenants.agents]]
id = "zoe"
name = "Zoe Li"
skills = { billing = 1 }
"""

# (queue, agent, rating or None for no answer, comment)
PLAYED = [
    ("support", "amy", 5, ""),
    ("support", "amy", 4, "quick"),
    ("support", "amy", 2, "had to call twice"),
    ("support", "amy", None, ""),
    ("billing", "zoe", 1, ""),
    ("billing", "zoe", None, ""),
]


async def played() -> World:
    w = await world(TENANT)
    for n, (queue, agent, rating, comment) in enumerate(PLAYED):
        address = f"+1555123{n:04d}"
        conversation = await w.assigned_to(agent, address=address, queue=queue)
        await agents.close(w.store, w.tenant, agent, conversation, "resolved")
        await w.fire("survey:")
        if rating is not None:
            ident = f"phone:{address}"
            assert await surveys.rate(w.store, w.tenant, conversation, rating, channel="sms", ident=ident) == (
                "rated",
                rating,
            )
            if comment:
                assert await surveys.comment(w.store, w.tenant, conversation, comment, channel="sms", ident=ident)
    return w


def today(w: World) -> dt.date:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()  # Asia/Shanghai has no DST


async def test_the_figures_match_a_hand_count():
    w = await played()
    day = today(w)
    figures = await satisfaction.period(w.store, w.tenant, day, day + dt.timedelta(days=1))
    support, billing = figures.queues
    amy, zoe = figures.agents
    # support: sent 4, answered 3 (5, 4, 2): CSAT 2/3, average 11/3, response 3/4
    assert (support.name, support.sent, support.answered, support.ratings) == ("support", 4, 3, [0, 1, 0, 1, 1])
    assert support.csat == pytest.approx(2 / 3)
    assert support.average == pytest.approx(11 / 3)
    assert support.response_rate == pytest.approx(3 / 4)
    # billing: sent 2, answered 1 (1): CSAT 0, average 1, response 1/2
    assert (billing.sent, billing.answered, billing.csat, billing.average, billing.response_rate) == (2, 1, 0, 1, 0.5)
    # the tenant: sent 6, answered 4, two of them 4 or 5: CSAT 50 %, average 12/4, response 4/6
    total = figures.total
    assert (total.sent, total.answered, total.good, total.sum) == (6, 4, 2, 12)
    assert (total.csat, total.average) == (0.5, 3.0)
    assert total.response_rate == pytest.approx(4 / 6)
    # each agent handled one queue here: the same figures
    assert (amy.name, amy.sent, amy.answered, amy.good, amy.sum) == ("amy", 4, 3, 2, 11)
    assert (zoe.name, zoe.sent, zoe.answered, zoe.good, zoe.sum) == ("zoe", 2, 1, 0, 1)
    # the comments, newest first
    assert [(c.rating, c.queue, c.agent, c.comment) for c in figures.comments] == [
        (2, "support", "amy", "had to call twice"),
        (4, "support", "amy", "quick"),
    ]
    # a day with nothing sent counts nothing
    before = await satisfaction.period(w.store, w.tenant, day - dt.timedelta(days=1), day)
    assert (before.total.sent, before.total.csat, before.comments) == (0, None, [])


async def test_the_report_carries_the_csat_and_the_cli_prints_the_table(capsys):
    w = await played()
    day = today(w)
    result = await reports.report(w.store, w.tenant, "day", day)
    figures = await satisfaction.period(w.store, w.tenant, day, day + dt.timedelta(days=1))
    satisfaction.fill(result, figures)
    assert [(q.queue, q.csat) for q in result.queues] == [("support", pytest.approx(2 / 3)), ("billing", 0.0)]
    assert result.total.csat == 0.5

    args = argparse.Namespace(
        action="", tenant="acme", date=day, period="day", by="queue", short_abandon=5.0, csv=None, until=None
    )
    await cli._report(w.store, w.deployment, args)
    printed = capsys.readouterr().out
    assert "support            4        3    75.0%   66.7%    3.67        2" in printed
    assert "billing            2        1    50.0%    0.0%    1.00        0" in printed
    assert "all                6        4    66.7%   50.0%    3.00        2" in printed
    args.by = "agent"
    await cli._report(w.store, w.deployment, args)
    assert "amy                4        3    75.0%   66.7%    3.67        2" in capsys.readouterr().out


async def test_today_per_queue_for_the_floor():
    w = await played()
    figures = await satisfaction.today(w.store, w.tenant)
    assert [(q.name, q.csat) for q in figures.queues] == [("support", pytest.approx(2 / 3)), ("billing", 0.0)]
    assert figures.comments == []
