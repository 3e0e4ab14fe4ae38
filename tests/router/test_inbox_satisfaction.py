"""Satisfaction on the supervisors' pages: the reports page's section (by queue and by
agent, with its charts, against tests/ops/test_satisfaction.py's hand count), the CSV's
CSAT column, and the floor's CSAT today with the low ratings to follow up."""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser

from tests.ops.test_satisfaction import played, today
from tests.router.test_inbox_pages import csrf_of
from tests.router.test_inbox_reports import Page, logged_in, serving


async def test_the_reports_page_shows_csat_by_queue_and_agent_with_charts() -> None:
    w = await played()
    report = f"/inbox/reports?tenant=acme&period=day&date={today(w).isoformat()}"
    async with serving(w) as server, logged_in(server, "sue") as client:
        html = await (await client.get(report)).text()
        by_agent = await (await client.get(report + "&by=agent")).text()
        download = await (await client.get(report.replace("/reports?", "/reports.csv?"))).text()
    assert 'data-figure="csat">50.0 %' in html  # 2 of 4 answers rated 4 or 5
    assert 'data-figure="average">3.00' in html  # (5 + 4 + 2 + 1) / 4
    assert 'data-figure="response_rate">66.7 %' in html  # 4 answers of 6 surveys
    page = Page(html)
    rows = _satisfaction_rows(html)
    assert rows["support"] == ["support", "4", "3", "75.0 %", "66.7 %", "3.67", "0", "1", "0", "1", "1", "2"]
    assert rows["billing"] == ["billing", "2", "1", "50.0 %", "0.0 %", "1.00", "1", "0", "0", "0", "0", "0"]
    assert rows["*"][:6] == ["All queues", "6", "4", "66.7 %", "50.0 %", "3.00"]
    assert page.shares("chart-csat") == {"support": (2 / 3, "none"), "billing": (0.0, "none")}
    assert page.bars("chart-ratings") == {
        ("1 poor", "answers"): 1,
        ("2", "answers"): 1,
        ("3", "answers"): 0,
        ("4", "answers"): 1,
        ("5 excellent", "answers"): 1,
    }
    assert "had to call twice" in html and "quick" in html
    assert page.rows["support"][-1] != ""  # the queue table is still there
    agents = _satisfaction_rows(by_agent)
    assert agents["amy"][:6] == ["Amy Pond", "4", "3", "75.0 %", "66.7 %", "3.67"]
    assert agents["zoe"][:6] == ["Zoe Li", "2", "1", "50.0 %", "0.0 %", "1.00"]
    assert Page(by_agent).shares("chart-csat") == {"Amy Pond": (2 / 3, "none"), "Zoe Li": (0.0, "none")}
    table = {row["queue"]: row["csat"] for row in csv.DictReader(io.StringIO(download))}
    assert table == {"support": "0.6667", "billing": "0.0", "*": "0.5"}


async def test_a_period_without_surveys_says_so() -> None:
    w = await played()
    async with serving(w) as server, logged_in(server, "sue") as client:
        html = await (await client.get("/inbox/reports?tenant=acme&period=day&date=2001-01-01")).text()
    assert 'id="satisfaction-none"' in html


async def test_the_floor_shows_csat_today_and_the_low_ratings_a_supervisor_follows_up() -> None:
    w = await played()
    async with serving(w) as server:
        async with logged_in(server, "sue") as client:
            floor = await (await client.get("/inbox/floor")).text()
            data = await (await client.get("/inbox/floor.json")).json()
            [acme] = data["tenants"]
            assert [(q["queue"], q["csat"], q["answered"], q["sent"]) for q in acme["satisfaction"]["queues"]] == [
                ("support", "66.7 %", 3, 4),
                ("billing", "0.0 %", 1, 2),
            ]
            low = acme["satisfaction"]["low"]
            assert [(item["rating"], item["queue"], item["agent"], item["comment"]) for item in low] == [
                ("1", "billing", "Zoe Li", ""),
                ("2", "support", "Amy Pond", "had to call twice"),
            ]
            assert "555" in low[0]["customer"]  # who rated it: their number (no name given), never an id
            assert "Low ratings to follow up" in floor and "had to call twice" in floor
            done = low[0]["conversation"]
            response = await client.post(
                f"/inbox/t/acme/c/{done}/followed-up", data={"csrf": csrf_of(floor)}, allow_redirects=False
            )
            assert response.status == 303 and response.headers["Location"] == "/inbox/floor?done=followed_up"
            data = await (await client.get("/inbox/floor.json")).json()
            left = data["tenants"][0]["satisfaction"]["low"]
            assert [item["conversation"] for item in left] == [low[1]["conversation"]]
            assert (await w.conversation(done))["survey_followup"] == "done:sue"
        async with logged_in(server, "amy") as agent:
            page = await (await agent.get("/inbox")).text()
            response = await agent.post(
                f"/inbox/t/acme/c/{low[1]['conversation']}/followed-up",
                data={"csrf": csrf_of(page)},
                allow_redirects=False,
            )
            assert response.status == 403


def _satisfaction_rows(html: str) -> dict[str, list[str]]:
    """The cells of the satisfaction table's rows, by their data-row."""
    parser = _Rows()
    parser.feed(html)
    return parser.rows


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, list[str]] = {}
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-row"):
            self._row = self.rows.setdefault(str(found["data-row"]), [])
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self._row[-1] += data.strip()
