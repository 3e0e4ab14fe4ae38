"""The reports page: ops.reports' figures for a known day (tests/ops/test_reports.py's
floor) as tables and SVG charts, the CSV download, and who may see which tenant."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from ops import reports as reports_api
from router.app import web
from router.app.inbox import accounts, charts, reports, second_factor
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, deployment, world
from tests.ops.test_reports import DAY, FLOOR, a_day_on_the_floor, clock  # noqa: F401 - fixture
from tests.router.test_inbox_pages import PASSWORD, SECRET, cheap_hashes, log_in, start_inbox  # noqa: F401 - fixture

REPORT = f"/inbox/reports?tenant=acme&period=day&date={DAY.isoformat()}"


class Page(HTMLParser):
    """A page's elements with their attributes, and the cells of its figure rows."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[str]] = {}
        self._row: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.elements.append((tag, found))
        if tag == "tr" and ("data-queue" in found or "data-agent" in found):
            self._row = self.rows.setdefault(found.get("data-queue") or found["data-agent"], [])
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self._row[-1] += data.strip()

    def bars(self, chart: str) -> dict[tuple[str, str], float]:
        """(category, series) -> value of each bar in the chart with that id."""
        inside, result = False, {}
        for tag, attrs in self.elements:
            if tag == "figure":
                inside = attrs.get("id") == chart
            elif inside and tag == "rect" and "data-value" in attrs:
                result[(attrs["data-category"], attrs["data-series"])] = float(attrs["data-value"])
        return result

    def shares(self, chart: str) -> dict[str, tuple[float | None, str]]:
        """label -> (value, met|missed|none|empty) of each row of a share chart."""
        inside, result = False, {}
        for tag, attrs in self.elements:
            if tag == "figure":
                inside = attrs.get("id") == chart
            elif inside and tag == "g" and "data-label" in attrs:
                value = float(attrs["data-value"]) if attrs["data-value"] else None
                result[attrs["data-label"]] = (value, attrs["class"].split("share-")[1])
        return result


@asynccontextmanager
async def serving(w: World) -> AsyncIterator[TestServer]:
    """The web process on w, with supervisor sue and agent amy of acme."""
    await accounts.add(w.store, "sue", PASSWORD, "supervisor", {"acme": ""})
    await second_factor.activate(w.store, "sue", SECRET)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    async with TestServer(web.application(w.store, w.deployment, Settings())) as server:
        yield server


@asynccontextmanager
async def logged_in(server: TestServer, login: str) -> AsyncIterator[ClientSession]:
    async with ClientSession(base_url=str(server.make_url("/")), cookie_jar=CookieJar(unsafe=True)) as client:
        response = await log_in(client, login)
        assert response.status == 303, await response.text()
        yield client


@pytest.fixture
async def floor(clock) -> AsyncIterator[TestServer]:  # noqa: F811 - the imported fixture
    async with serving(await a_day_on_the_floor(clock)) as server:
        yield server


async def test_a_supervisor_sees_the_days_figures_in_tables_and_charts(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        response = await client.get(REPORT)
        assert response.status == 200 and "script-src 'self'" in response.headers["Content-Security-Policy"]
        html = await response.text()
    page = Page(html)
    assert page.rows["support"][1:7] == ["5", "3", "2", "1", "20.0 %", "25.0 %"]  # offered ... SL without short
    assert page.rows["support"][7:9] == ["25.0 %", "0"]  # SL with abandons within the target neutral, pending
    assert page.rows["support"][9:13] == ["80 % in 20 s", "32 s", "40.0 %", "1 min 33 s"]  # target, ASA, aband., AHT
    assert page.rows["letters"][1:3] + page.rows["letters"][5:6] == ["1", "1", "100.0 %"]
    assert page.rows["*"][0:3] == ["All queues", "6", "4"]
    assert 'data-figure="occupancy">44.1 %' in html  # (810 + 160) / 2200

    assert page.bars("chart-volume") == {
        ("support", "offered"): 5,
        ("support", "handled"): 3,
        ("support", "abandoned"): 2,
        ("letters", "offered"): 1,
        ("letters", "handled"): 1,
        ("letters", "abandoned"): 0,
    }
    assert page.shares("chart-service") == {"support": (0.2, "missed"), "letters": (1.0, "met")}
    targets = [attrs for tag, attrs in page.elements if tag == "line" and attrs.get("class") == "target"]
    assert len(targets) == 2  # one target line per queue

    arrivals = page.bars("chart-arrivals")
    assert len(arrivals) == 24  # the hours of the day
    busy = {hour: value for (hour, _series), value in arrivals.items() if value}
    assert busy == {"09:00": 6}  # every contact of the floor came between 09:00 and 10:00; D became E
    assert "<script" not in html


async def test_by_agent_shows_each_agents_offers_and_occupancy(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        page = Page(await (await client.get(REPORT + "&by=agent")).text())
    assert page.rows["amy"] == ["amy", "2", "2", "0", "0", "6 min 45 s", "18 min 20 s", "13 min 30 s", "73.6 %"]
    assert page.rows["zoe"][-1] == "14.5 %"  # 160 s of 1,100 s
    offers = page.bars("chart-offers")
    assert (offers[("amy", "accepted")], offers[("zoe", "offers")], offers[("zoe", "missed")]) == (2, 2, 0)
    assert page.shares("chart-occupancy") == {
        "amy": (pytest.approx(810 / 1100), "none"),
        "zoe": (pytest.approx(160 / 1100), "none"),
    }
    assert page.bars("chart-volume") == {}  # the queue charts belong to by=queue


async def test_a_week_charts_its_days(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        page = Page(await (await client.get("/inbox/reports?tenant=acme&period=week&date=2026-11-05")).text())
    arrivals = page.bars("chart-arrivals")
    assert [day for day, _series in arrivals] == ["Mon 2", "Tue 3", "Wed 4", "Thu 5", "Fri 6", "Sat 7", "Sun 8"]
    assert arrivals[("Mon 2", "offered")] == 6 and sum(arrivals.values()) == 6


async def test_a_custom_range_and_a_quarter_are_periods_too(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        span = Page(
            await (await client.get("/inbox/reports?tenant=acme&period=range&date=2026-11-01&until=2026-11-03")).text()
        )
        quarter = Page(await (await client.get("/inbox/reports?tenant=acme&period=quarter&date=2026-11-05")).text())
    arrivals = span.bars("chart-arrivals")
    assert [day for day, _series in arrivals] == ["11-01", "11-02", "11-03"]
    assert arrivals[("11-02", "offered")] == 6
    assert span.rows["*"][1] == quarter.rows["*"][1] == "6"
    assert len(quarter.bars("chart-arrivals")) == 92  # October to December


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("period=range&date=2026-11-03", "until: a range needs its last day"),
        ("period=range&date=2026-11-03&until=2026-11-01", "until: 2026-11-01 is before the range"),
        ("period=range&date=2020-01-01&until=2026-11-01", "until: a range is at most 1098 days"),
        ("period=range&date=2026-11-01&until=tomorrow", "until: &#39;tomorrow&#39; is not a day"),
    ],
)
async def test_a_range_needs_a_last_day_after_its_first(query: str, message: str) -> None:
    _w, server = await start_inbox()
    async with server, logged_in(server, "sue") as client:
        response = await client.get(f"/inbox/reports?tenant=acme&{query}")
        assert response.status == 400 and message in await response.text()


async def test_without_a_query_the_page_shows_today_for_the_first_tenant(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        page = Page(await (await client.get("/inbox/reports")).text())
    assert page.rows["*"][1] == "6"  # the clock says it is still the floor's day


async def test_a_period_the_stream_no_longer_holds_whole_is_marked_partial(floor: TestServer, clock) -> None:  # noqa: F811
    store = floor.app[web.STORE]
    async with logged_in(floor, "sue") as client:
        assert "figures are partial" not in await (await client.get(REPORT)).text()
        await store.redis.xtrim(Keys("acme").events, minid=f"{int((clock.now - 3000) * 1000)}-0", approximate=False)
        assert "figures are partial" in await (await client.get(REPORT)).text()


def test_a_day_when_the_clocks_go_back_has_25_hours() -> None:
    tenant = deployment(FLOOR.replace('timezone = "UTC"', 'timezone = "America/New_York"')).tenants[0]
    start, end = reports_api.period_bounds(tenant, "day", dt.date(2026, 11, 1))
    hours = [label for _ms, label in reports.intervals(tenant, "day", start, end)]
    assert len(hours) == 25 and hours[:3] == ["00:00", "01:00", "01:00"]


async def test_the_csv_download_is_the_reports_own_export(floor: TestServer) -> None:
    async with logged_in(floor, "sue") as client:
        response = await client.get(REPORT.replace("/inbox/reports", "/inbox/reports.csv"))
        assert response.status == 200 and response.content_type == "text/csv"
        disposition = response.headers["Content-Disposition"]
        assert disposition == 'attachment; filename="report-acme-day-2026-11-02-queue.csv"'
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        agents = await client.get(REPORT.replace("/inbox/reports", "/inbox/reports.csv") + "&by=agent")
        by_agent = list(csv.DictReader(io.StringIO(await agents.text())))
    assert [(r["queue"], r["offered"], r["handled"], r["service_level"]) for r in rows] == [
        ("support", "5", "3", "0.2"),
        ("letters", "1", "1", "1.0"),
        ("*", "6", "4", "0.3333"),
    ]
    assert rows[0]["start"] == "2026-11-02T00:00:00+00:00"
    assert [(r["agent"], r["accepted"], r["staffed_s"]) for r in by_agent] == [
        ("amy", "2", "1100.0"),
        ("zoe", "2", "1100.0"),
    ]


async def test_agents_may_not_see_reports(floor: TestServer) -> None:
    async with logged_in(floor, "amy") as client:
        assert (await client.get(REPORT)).status == 403
        assert (await client.get(REPORT.replace("/inbox/reports", "/inbox/reports.csv"))).status == 403
        assert 'href="/inbox/reports"' not in await (await client.get("/inbox")).text()
    async with logged_in(floor, "sue") as client:
        assert 'href="/inbox/reports"' in await (await client.get("/inbox")).text()


async def test_another_tenants_report_is_not_found() -> None:
    _w, server = await start_inbox()  # sue supervises acme; globex is someone else's
    async with server, logged_in(server, "sue") as client:
        for path in ("/inbox/reports", "/inbox/reports.csv"):
            assert (await client.get(f"{path}?tenant=globex&period=day&date=2026-11-02")).status == 404
            assert (await client.get(f"{path}?tenant=nowhere")).status == 404
            assert (await client.get(f"{path}?tenant=globex&date=not-a-day")).status == 404  # 404 before 400
        assert (await client.get("/inbox/reports?tenant=acme")).status == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date=2026-13-01", "date: &#39;2026-13-01&#39; is not a day as YYYY-MM-DD"),
        ("date=20261102", "date: &#39;20261102&#39; is not a day as YYYY-MM-DD"),
        ("date=9999-12-31&period=month", "date: 9999-12-31 is outside the years 1971 to 9998"),
        ("date=0001-01-01&period=week", "date: 0001-01-01 is outside the years 1971 to 9998"),
        ("period=year", "period: &#39;year&#39; is not one of day, week, month"),
        ("by=customer", "by: &#39;customer&#39; is not one of queue, agent"),
    ],
)
async def test_a_query_that_cannot_run_is_400_with_the_reason(query: str, message: str) -> None:
    _w, server = await start_inbox()
    async with server, logged_in(server, "sue") as client:
        response = await client.get(f"/inbox/reports?tenant=acme&{query}")
        assert response.status == 400
        html = await response.text()
        assert message in html and 'id="report-form"' in html and 'id="report"' not in html
        download = await client.get(f"/inbox/reports.csv?tenant=acme&{query}")
        assert download.status == 400 and message.replace("&#39;", "'") in await download.text()


async def test_names_from_the_configuration_are_escaped_in_tables_and_charts() -> None:
    w = await world(
        """
        [[tenants]]
        id = "acme"
        entry = { default = "support" }

        [[tenants.queues]]
        id = "support"
        name = "<b>Help</b> & \\"Co\\""

        [[tenants.agents]]
        id = "amy"
        name = "<img src=x onerror=alert(1)>"
        """
    )
    async with serving(w) as server, logged_in(server, "sue") as client:
        queues = await (await client.get("/inbox/reports?tenant=acme")).text()
        by_agent = await (await client.get("/inbox/reports?tenant=acme&by=agent")).text()
    assert "<b>Help" not in queues and "&lt;b&gt;Help&lt;/b&gt; &amp; &#34;Co&#34;" in queues
    assert 'data-category="&lt;b&gt;Help&lt;/b&gt; &amp; &#34;Co&#34;"' in queues  # in the SVG's attributes too
    assert "<img" not in by_agent and "&lt;img src=x onerror=alert(1)&gt;" in by_agent


def test_axes_end_on_a_round_number_in_whole_steps_for_counts() -> None:
    assert charts.scale(5) == (6, 2)
    assert charts.scale(0) == (4, 1)
    assert charts.scale(3) == (3, 1)  # never a step of 0.75 contacts
    assert charts.scale(1234) == (1500, 500)
    assert charts.scale(0.37, whole=False) == pytest.approx((0.4, 0.1))


def test_bars_scale_to_the_axis_and_long_labels_are_shortened() -> None:
    names = ["a queue with a very long name indeed", *"bcdefgh"]
    chart = charts.columns(names, ["offered"], [[6], [3], *[[0]] * 6], height=260)
    tall, short = chart.bars[:2]
    assert tall.y == chart.top and tall.height == chart.bottom - chart.top  # 6 is the axis' top
    assert short.height == pytest.approx(tall.height / 2)
    label = chart.categories[0]
    assert label.label.endswith("…") and label.title == "a queue with a very long name indeed"
