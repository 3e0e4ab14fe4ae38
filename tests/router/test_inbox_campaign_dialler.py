"""The campaign page of a voice campaign with agents on the line shows its dialler's
figures: dials, answers, machines, put through, abandoned, and the 30-day abandon rate
against the limit. A campaign without agents on the line shows none."""

from __future__ import annotations

import datetime as dt
import re

from router.keys import Keys
from tests.router.test_inbox_campaigns import AUDIENCE, DUES, inbox  # noqa: F401 - the fixture
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import create_campaign

CALLS = """
id = "calls"
tenant = "acme"
name = "June calls"
kind = "collections"
channel = "voice"
queue = "collections"
[voice]
dial_mode = "predictive"
[templates.voice.en]
body = "Hello {{ name }}."
"""


def cells(page: str) -> list[str]:
    table = re.search(r'<table class="dialler">.*?</table>', page, re.S)
    assert table, "no dialler table on the page"
    return [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td>(.*?)</td>", table.group(0), re.S)]


async def test_the_page_shows_the_dialler_figures_and_the_30_day_abandon_rate(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    await create_campaign(w, CALLS, AUDIENCE, rejected=1)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    await w.store.redis.hset(
        Keys("acme").campaign_dial_figures("calls"),
        mapping={
            "outcomes": 1000, "answered": 300, "machines": 150, "connects": 291, "abandoned": 9,
            f"answered:{today}": 300, f"abandoned:{today}": 9,
        },
    )
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/calls")).text()
    assert "Dialler (predictive)" in page
    assert cells(page) == ["1,000", "0", "300 (30.0%)", "150", "291", "9"]
    assert "Abandoned over the last 30 days: 3.00% of 300 answered calls (the limit is 3%; at the limit" in page


async def test_a_campaign_without_agents_on_the_line_shows_no_dialler(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/dues")).text()
    assert "Dialler" not in page
