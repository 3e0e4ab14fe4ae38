"""The desk for voice campaigns with agents on the line: the campaign page shows its
dialler's figures (dials, answers, machines, put through, abandoned, and the 30-day
abandon rate against the limit; a campaign without agents on the line shows none), and
the agent reads the campaign's script, rendered for the recipient, beside the call."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from router.campaigns.model import CampaignError, parse_campaign
from router.keys import Keys
from tests.router.test_inbox_campaigns import AUDIENCE, DUES, NOON_NY, inbox  # noqa: F401 - the fixture
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import create_campaign
from workers.campaigns.worker import CampaignWorker

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


SCRIPTED = CALLS.replace('dial_mode = "predictive"', 'script = """{script}"""').replace('"calls"', '"scripted"')


async def scripted_conversation(inbox: Inbox, script: str) -> str:  # noqa: F811
    w = inbox.world
    await create_campaign(w, SCRIPTED.replace("{script}", script), AUDIENCE, rejected=1)
    assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 3
    conversation = await w.arrive(address="+12125550001", body="You called me")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
    start = page.index('id="campaign-context"')
    return page[start : page.index("</section>", start)]


async def test_the_agent_reads_the_campaigns_script_for_the_recipient_escaped(inbox: Inbox) -> None:  # noqa: F811
    panel = await scripted_conversation(
        inbox, "Ask for {{ name }}.\nConfirm account {{ account }}; {{ balance }} is due. Offer: {{ offer }}"
    )
    script = re.search(r'<div class="script" id="campaign-script">(.*?)</div>', panel, re.S)
    assert script, panel
    assert script.group(1) == (
        "Ask for Jane.\nConfirm account AC-1; $120.00 is due. "
        "Offer: &lt;script&gt;alert(&#39;offer&#39;)&lt;/script&gt;"
    )


async def test_a_script_that_fails_for_the_recipient_says_why_instead(inbox: Inbox) -> None:  # noqa: F811
    panel = await scripted_conversation(inbox, "Ask about {{ missing_field }}.")
    assert (
        "The campaign's script could not be shown: template agent script, line 1: &#39;missing_field&#39; is undefined"
    ) in panel


def test_a_script_that_does_not_compile_is_refused_with_its_line() -> None:
    with pytest.raises(CampaignError, match=r"voice.script`: line 2"):
        parse_campaign(SCRIPTED.replace("{script}", "Hello\n{% if %}"), "scripted.toml")


async def test_the_agent_stops_the_calls_when_the_customer_asks_and_no_campaign_calls_again(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    await create_campaign(w, SCRIPTED.replace("{script}", "Hello"), AUDIENCE, rejected=1)
    assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 3
    conversation = await w.arrive(address="+12125550001", body="Stop calling me")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    path = f"/inbox/t/acme/c/{conversation}/do-not-call"

    client, csrf = await logged_in(inbox, "zoe")  # not her conversation
    async with client:
        refused = await client.post(path, data={"csrf": csrf}, allow_redirects=False)
        assert refused.status in (404, 409)
    assert not await w.store.redis.sismember(Keys("acme").do_not_contact, "+12125550001")

    client, csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert 'id="do-not-call-form"' in page
        assert (await client.post(path, allow_redirects=False)).status == 403  # no CSRF token
        done = await client.post(path, data={"csrf": csrf}, allow_redirects=False)
        assert done.status == 303
        page = await (await client.get(done.headers["Location"])).text()
    assert "no campaign will call it again" in page
    assert await w.store.redis.sismember(Keys("acme").do_not_contact, "+12125550001")


async def test_the_page_shows_each_agents_figures(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    await create_campaign(w, CALLS, AUDIENCE, rejected=1)
    await w.store.redis.hset(
        Keys("acme").campaign_agent_figures("calls"),
        mapping={
            "amy:connects": 12, "amy:right_party": 10, "amy:promises": 3, "amy:promised_cents": 123456,
            "amy:talk_ms": 1_800_000, "amy:wrap_ms": 240_000, "start:cmp-calls-1": 1,
        },
    )
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/calls")).text()
    table = re.search(r'<table class="per-agent">.*?</table>', page, re.S)
    assert table, "no per-agent table"
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", table.group(0), re.S)
    assert [(name, re.findall(r"<td>(.*?)</td>", cells)) for name, cells in rows] == [
        ("amy", ["12", "10", "3", "1,234.56", "30 min", "4 min"])
    ]


def customer_time(days: int, clock: str) -> str:
    """A time in New York (Jane's), `days` from today there."""
    today = dt.datetime.now(ZoneInfo("America/New_York")).date()
    return f"{today + dt.timedelta(days=days)}T{clock}"


async def test_a_callback_the_customer_asks_for_is_the_agents_at_their_time_and_judged_again_when_listed(
    inbox: Inbox,  # noqa: F811
) -> None:
    w = inbox.world
    await create_campaign(w, SCRIPTED.replace("{script}", "Hello"), AUDIENCE, rejected=1)
    assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 3
    conversation = await w.arrive(address="+12125550001", body="Call me tomorrow morning")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    path = f"/inbox/t/acme/c/{conversation}/callback-at"
    keys = Keys("acme")

    client, csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert 'id="callback-form"' in page
        late = await client.post(path, data={"csrf": csrf, "at": customer_time(1, "21:30")}, allow_redirects=False)
        assert late.status == 409
        assert "is outside the hours the campaign may call (09:00-20:00" in await late.text()
        past = await client.post(path, data={"csrf": csrf, "at": customer_time(-1, "10:00")}, allow_redirects=False)
        assert past.status == 409 and "has passed" in await past.text()
        assert await w.store.redis.zcard(keys.agent_campaign_callbacks("amy")) == 0  # nothing stored

        made = await client.post(path, data={"csrf": csrf, "at": customer_time(1, "10:00")}, allow_redirects=False)
        assert made.status == 303
        listed = await (await client.get("/inbox/campaign-callbacks")).text()
        row = re.search(rf'<tr data-conversation="{conversation}">.*?</tr>', listed, re.S)
        assert row, listed
        assert "10:00 (America/New_York)" in row.group(0) and "Not yet" in row.group(0)

        await w.store.redis.sadd(keys.do_not_contact, "+12125550001")  # since it was scheduled
        listed = await (await client.get("/inbox/campaign-callbacks")).text()
        assert "Cannot call: the number is on the do-not-contact list" in listed

        done = await client.post(
            f"/inbox/campaign-callbacks/acme/{conversation}/done", data={"csrf": csrf}, allow_redirects=False
        )
        assert done.status == 303
        assert "No callbacks." in await (await client.get("/inbox/campaign-callbacks")).text()

    client, _csrf = await logged_in(inbox, "zoe")  # someone else's callbacks are not hers
    async with client:
        assert "No callbacks." in await (await client.get("/inbox/campaign-callbacks")).text()
