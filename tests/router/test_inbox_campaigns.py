"""Campaigns in the inbox: supervisors see each campaign's live figures, its A/B variants,
the import's rejected rows and a preview, and launch/pause/resume/cancel it through the
registry the CLI uses; agents see a reply's campaign context on its conversation."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator

import pytest

from router import audit, events
from router.campaigns import registry
from router.campaigns.model import parse_campaign
from tests.factories import World, deployment
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import create_campaign
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)  # a Tuesday, inside every send window
DEPLOYMENT = """
[[tenants]]
id = "acme"
name = "Acme Energy"
entry = { default = "support" }
dispositions = ["resolved", "promise_to_pay", "paid", "disputed"]

[[tenants.queues]]
id = "support"

[[tenants.queues]]
id = "collections"

[[tenants.agents]]
id = "amy"

[[tenants.agents]]
id = "zoe"

[[tenants]]
id = "globex"
entry = { default = "sales" }

[[tenants.queues]]
id = "sales"

[[tenants.agents]]
id = "gus"
"""
DUES = """
id = "dues"
tenant = "acme"
name = "June <dues>"
kind = "collections"
channel = "sms"
queue = "collections"
[templates.sms.en]
body = "Hi {{ name }}, {{ balance }} is due on {{ due_date }}. {{ offer }}"
[[variants]]
name = "A"
share = 50
[[variants]]
name = "B"
share = 50
[variants.templates.sms.en]
body = "{{ name }}: please pay {{ balance }} by {{ due_date }}. {{ offer }}"
"""
AUDIENCE = (
    "phone,name,account,balance,due_date,offer\n"
    "+12125550001,Jane,AC-1,$120.00,2027-06-30,<script>alert('offer')</script>\n"
    "+12125550002,<b>Bob</b>,AC-2,$80.00,2027-07-01,\n"
    "not-a-number,Nobody,AC-3,$1.00,2027-07-01,\n"
    "+12125550004,Ana,AC-4,$15.50,2027-07-02,3 x $5.17\n"
)
UPGRADE = """
id = "upgrade"
tenant = "globex"
kind = "cross_sell"
channel = "sms"
queue = "sales"
[templates.sms.en]
body = "Hi {{ name }}, upgrade today."
"""


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox(DEPLOYMENT)
    async with server:
        yield Inbox(w, server)


def worker(w: World) -> CampaignWorker:
    return CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)


async def results(w: World, *extra: events.StateEvent) -> None:
    """What the campaigns' results follower does with the events so far (and extra ones)."""
    follower = Results(w.store)
    for event in [*await w.events(), *extra]:
        await follower.apply("acme", event)


def figures(fragment: str) -> dict[str, str]:
    return dict(re.findall(r'data-count="(\w+)">([\d,]+)<', fragment))


def row_of(page: str, pattern: str) -> str:
    match = re.search(pattern + r".*?</tr>", page, re.S)
    assert match, f"no row {pattern!r} on the page"
    return match.group(0)


async def test_the_list_shows_each_campaign_with_its_live_figures(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    assert await worker(w).step() == 3
    delivered = events.DeliveryStatus(
        tenant="acme", occurred_at=events.now_ms(), channel="sms", message="cmp-dues-1-1", status="delivered"
    )
    await w.arrive(address="+12125550002", body="can I pay later?")
    await results(w, delivered)

    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns")).text()
        row = row_of(page, r'<tr class="campaign" data-tenant="acme" data-campaign="dues"')
        assert "June &lt;dues&gt;" in row and "<dues>" not in row
        assert "collections" in row and ">running<" in row and "100 %" in row
        assert figures(row) == {
            "queued": "0",
            "sent": "3",
            "delivered": "1",
            "failed": "0",
            "suppressed": "0",
            "replied": "1",
            "converted": "0",
        }
        assert 'href="/inbox/campaigns"' in page  # the header's link
        assert '<script src="/inbox/static/campaigns.js">' in page

        data = await (await client.get("/inbox/campaigns.json")).json()
        [dues] = data["campaigns"]
        assert (dues["tenant"], dues["campaign"], dues["state"], dues["percent"]) == ("acme", "dues", "running", 100)
        assert dues["counts"]["sent"] == 3 and dues["counts"]["replied"] == 1 and dues["counts"]["rejected"] == 1
        assert dues["actions"] == ["pause", "cancel"]
        script = await client.get("/inbox/static/campaigns.js")
        assert script.status == 200 and script.content_type == "application/javascript"


async def test_the_campaign_page_shows_variants_rejects_and_an_inert_preview(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1, launch=False)
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/dues")).text()
        assert 'id="campaign-state">draft<' in page
        assert "<tr><td>4</td><td>phone &#39;not-a-number&#39; is not a phone number" in page
        preview = page[page.index('id="preview"') :]
        assert "&lt;script&gt;alert(&#39;offer&#39;)&lt;/script&gt;" in preview and "<script>alert" not in page
        assert "&lt;b&gt;Bob&lt;/b&gt;" in preview and "<b>Bob</b>" not in page
        assert preview.count('class="preview-message"') == 3
        variant = parse_campaign(DUES).variant_of(1)
        assert f"line 2 · sms to +12125550001 · variant {variant}" in preview
        assert "Reply STOP to opt out." in preview  # what the worker would really send
        # Only the actions the state allows are shown (the script reveals the others live).
        assert re.search(r'data-action="launch"\s*>', page) and re.search(r'data-action="pause"[^>]*hidden', page)

        assert await worker(w).step() == 0  # a draft sends nothing
        await registry.change(w.store, "acme", "dues", "launch", deployment=w.deployment)
        assert await worker(w).step() == 3
        progress = await registry.progress(w.store, "acme", "dues")
        page = await (await client.get("/inbox/campaigns/acme/dues")).text()
        assert 'id="campaign-state">running<' in page
        campaign = parse_campaign(DUES)
        for variant in ("A", "B"):
            expected = sum(campaign.variant_of(seq) == variant for seq in (1, 2, 4))
            assert progress.variants.get(variant, {}).get("sent", 0) == expected
            assert figures(row_of(page, f'<tr data-variant="{variant}">'))["sent"] == str(expected)

        data = await (await client.get("/inbox/campaigns/acme/dues/progress.json")).json()
        assert data["campaigns"][0]["counts"]["sent"] == 3 and data["campaigns"][0]["state"] == "running"


async def test_the_campaign_page_counts_the_messages_held_back_as_they_were_to_leave(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    assert await worker(w).step() == 3
    await registry.change(w.store, "acme", "dues", "pause")  # before the dispatcher got to them
    dispatcher = Dispatcher(w.store)
    for message in await w.outgoing():
        assert await dispatcher.deliver(message, events.encode(message)) == "held"
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        shown = figures(await (await client.get("/inbox/campaigns/acme/dues")).text())
        assert (shown["queued"], shown["sent"], shown["refused_at_send"]) == ("3", "0", "3")
        data = await (await client.get("/inbox/campaigns/acme/dues/progress.json")).json()
        assert data["campaigns"][0]["counts"]["refused_at_send"] == 3


async def test_pause_and_resume_need_the_csrf_token_and_stop_the_sending(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    client, csrf = await logged_in(inbox, "sue")
    async with client:
        refused = await client.post("/inbox/campaigns/acme/dues/pause", allow_redirects=False)
        assert refused.status == 403
        refused = await client.post("/inbox/campaigns/acme/dues/pause", data={"csrf": "wrong"}, allow_redirects=False)
        assert refused.status == 403
        assert (await registry.load(w.store, "acme", "dues"))[1] == "running"

        paused = await client.post("/inbox/campaigns/acme/dues/pause", data={"csrf": csrf}, allow_redirects=False)
        assert paused.status == 303 and paused.headers["Location"] == "/inbox/campaigns/acme/dues?done=campaign_pause"
        assert (await registry.load(w.store, "acme", "dues"))[1] == "paused"
        assert await worker(w).step() == 0
        page = await (await client.get(paused.headers["Location"])).text()
        assert "Campaign paused." in page and 'id="campaign-state">paused<' in page

        again = await client.post("/inbox/campaigns/acme/dues/pause", data={"csrf": csrf}, allow_redirects=False)
        assert again.status == 409 and "cannot pause campaign dues: it is paused" in await again.text()

        resumed = await client.post("/inbox/campaigns/acme/dues/resume", data={"csrf": csrf}, allow_redirects=False)
        assert resumed.status == 303 and (await registry.load(w.store, "acme", "dues"))[1] == "running"
        assert await worker(w).step() == 3

        cancelled = await client.post("/inbox/campaigns/acme/dues/cancel", data={"csrf": csrf}, allow_redirects=False)
        assert cancelled.status == 303 and (await registry.load(w.store, "acme", "dues"))[1] == "cancelled"
        unknown = await client.post("/inbox/campaigns/acme/dues/delete", data={"csrf": csrf}, allow_redirects=False)
        assert unknown.status in (404, 405)


async def test_agents_may_not_see_or_run_campaigns(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        for url in ("/inbox/campaigns", "/inbox/campaigns.json", "/inbox/campaigns/acme/dues"):
            assert (await client.get(url, allow_redirects=False)).status == 403, url
        response = await client.post("/inbox/campaigns/acme/dues/pause", data={"csrf": csrf}, allow_redirects=False)
        assert response.status == 403
        assert 'href="/inbox/campaigns"' not in await (await client.get("/inbox")).text()
    assert (await registry.load(w.store, "acme", "dues"))[1] == "running"


async def test_another_tenants_campaign_is_not_found(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    await create_campaign(w, UPGRADE, "phone,name\n+12125550009,Gil\n")
    client, csrf = await logged_in(inbox, "sue")  # supervises acme only
    async with client:
        for url in ("/inbox/campaigns/globex/upgrade", "/inbox/campaigns/globex/upgrade/progress.json"):
            assert (await client.get(url)).status == 404, url
        response = await client.post("/inbox/campaigns/globex/upgrade/pause", data={"csrf": csrf})
        assert response.status == 404
        assert (await client.get("/inbox/campaigns/acme/upgrade")).status == 404  # not acme's either
        assert (await client.get("/inbox/campaigns/acme/nope")).status == 404
        listed = await (await client.get("/inbox/campaigns.json")).json()
        assert [c["campaign"] for c in listed["campaigns"]] == ["dues"]
        assert "upgrade" not in await (await client.get("/inbox/campaigns")).text()
    assert (await registry.load(w.store, "globex", "upgrade"))[1] == "running"


async def test_a_reply_shows_its_campaign_context_inert_and_the_kinds_dispositions(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    assert await worker(w).step() == 3
    conversation = await w.arrive(address="+12125550001", body="I can pay half now")
    assert conversation == "cmp-dues-1"
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation

    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
    start = page.index('id="campaign-context"')
    panel = page[start : page.index("</section>", start)]
    assert "June &lt;dues&gt;" in panel and "collections" in panel
    assert "<dt>balance</dt><dd>$120.00</dd>" in panel and "<dt>due date</dt><dd>2027-06-30</dd>" in panel
    assert "<dd>&lt;script&gt;alert(&#39;offer&#39;)&lt;/script&gt;</dd>" in panel
    assert "<script>alert" not in page
    assert "/inbox/campaigns/acme/dues" not in panel  # the campaign's page is for supervisors
    close = page[page.index('id="close-form"') :]
    campaign_group = re.search(r'<optgroup label="Campaign \(collections\)">(.*?)</optgroup>', close, re.S)
    assert campaign_group
    offered = re.findall(r'<option value="(\w+)"', campaign_group.group(1))
    assert offered == ["promise_to_pay", "paid", "disputed"]  # the kind's, in the tenant's list only
    assert 'value="resolved"' in close

    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
    assert 'href="/inbox/campaigns/acme/dues"' in page


async def test_a_conversation_of_no_campaign_has_no_campaign_panel(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", address="+15550001111", body="hello")
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
    assert 'id="campaign-context"' not in page and "<optgroup" not in page
    assert '<option value="resolved">' in page


async def test_a_campaign_that_cannot_launch_says_why_on_its_page_and_its_launch_is_refused(inbox: Inbox) -> None:
    """An email offer of acme, created while acme had an address, which the deployment the
    web process runs has no more: its mailto: unsubscribe would go nowhere."""
    w = inbox.world
    offer = UPGRADE.replace('tenant = "globex"', 'tenant = "acme"').replace('queue = "sales"', 'queue = "support"')
    offer = offer.replace('channel = "sms"', 'channel = "email"').replace(
        "[templates.sms.en]", '[templates.email.en]\nsubject = "Upgrade"'
    )
    then = deployment(
        DEPLOYMENT.replace(
            "[[tenants.queues]]", 'email = { addresses = ["help@acme.example"] }\n\n[[tenants.queues]]', 1
        )
    )
    await registry.create(w.store, then, parse_campaign(offer))
    client, csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/upgrade")).text()
        notice = page[page.index('id="launch-problem"') :]
        assert "It cannot be launched as it stands" in notice and "tenant acme has no email address" in notice
        refused = await client.post("/inbox/campaigns/acme/upgrade/launch", data={"csrf": csrf}, allow_redirects=False)
        assert refused.status == 409
        assert "cannot launch campaign upgrade: an email campaign cannot go out: tenant acme" in await refused.text()
    assert (await registry.load(w.store, "acme", "upgrade"))[1] == "draft"


async def test_a_supervisor_downloads_every_recipients_results_and_the_audit_trail_says_who(inbox: Inbox) -> None:
    w = inbox.world
    await create_campaign(w, DUES, AUDIENCE, rejected=1)
    assert await worker(w).step() == 3
    delivered = events.DeliveryStatus(
        tenant="acme", occurred_at=events.now_ms(), channel="sms", message="cmp-dues-1-1", status="delivered"
    )
    await results(w, delivered)
    client, _csrf = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/campaigns/acme/dues")).text()
        assert 'href="/inbox/campaigns/acme/dues/recipients.csv"' in page
        response = await client.get("/inbox/campaigns/acme/dues/recipients.csv")
        assert response.status == 200 and response.content_type == "text/csv"
        assert 'filename="campaign-acme-dues-recipients.csv"' in response.headers["Content-Disposition"]
        table = list(csv.DictReader(io.StringIO(await response.text())))
        assert (await client.get("/inbox/campaigns/globex/upgrade/recipients.csv")).status == 404
    assert [(r["name"], r["outcome"], r["channel"]) for r in table] == [
        ("Jane", "delivered", "sms"),
        ("<b>Bob</b>", "sent", "sms"),
        ("Ana", "sent", "sms"),
    ]
    entries, _ = await audit.read(w.store, tenant="acme", action="export")
    assert [(e.actor, e.target) for _id, e in entries] == [("sue", "campaign dues recipients")]
    client, _csrf = await logged_in(inbox, "amy")  # an agent may not
    async with client:
        assert (await client.get("/inbox/campaigns/acme/dues/recipients.csv", allow_redirects=False)).status == 403
