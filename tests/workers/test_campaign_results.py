"""After the send: replies routed to the campaign's queue with its context, delivery
results with the fallback channel, dispositions, and one-click unsubscribe."""

import datetime as dt
import io
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.transport import Refused
from router import agents, events
from router.appkeys import DEPLOYMENT as DEPLOYMENT_KEY
from router.appkeys import STORE
from router.campaigns import registry
from router.campaigns.model import Campaign
from router.keys import Keys
from tests.factories import PROMISE, World, world
from tests.workers.campaigns import Clock, create_campaign
from workers.campaigns import unsubscribe
from workers.campaigns.results import Results, write_csv
from workers.campaigns.results import report as results_report
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)
DEPLOYMENT = """
[[tenants]]
id = "acme"
entry = { default = "support" }
email = { addresses = ["help@acme.example"] }  # where campaign email leaves from, and its mailto: unsubscribe goes
dispositions = ["resolved", "promise_to_pay", "paid", "disputed", "converted"]

[[tenants.queues]]
id = "support"

[[tenants.queues]]
id = "collections"

[[tenants.agents]]
id = "amy"
"""
CAMPAIGN = """
id = "dues"
tenant = "acme"
kind = "collections"
channel = "sms"
fallback_channel = "email"
queue = "collections"
retry = { attempts = 2, spacing_minutes = 0 }
[templates.sms.en]
body = "Hi {{ name }}, {{ balance }} is due."
[templates.email.en]
subject = "Your balance"
body = "Hi {{ name }}, {{ balance }} is due."
"""
AUDIENCE = "phone,email,name,balance,account\n+12125550000,jane@example.com,Jane,$120.00,A-1\n"


async def sent_world():
    w = await world(DEPLOYMENT)
    await create_campaign(w, CAMPAIGN, AUDIENCE)
    worker = CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)
    assert await worker.step() == 1
    return w, worker


async def follow(w) -> Results:
    """Feed the tenant's events so far to the results follower."""
    results = Results(w.store)
    for event in await w.events():
        await results.apply("acme", event)
    return results


async def test_a_reply_joins_the_campaign_conversation_in_the_campaigns_queue_with_its_context():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+12125550000", body="I can pay next week")
    assert conversation == "cmp-dues-1"
    record = await w.conversation(conversation)
    assert record["queue"] == "collections" and record["campaign"] == "dues"
    assert json.loads(record["campaign_context"])["balance"] == "$120.00"
    assert await w.waiting("collections") == [conversation]
    history = [(e.kind, e.body) for e in await w_history(w, conversation)]
    assert history == [("out", "Hi Jane, $120.00 is due. Reply STOP to opt out."), ("in", "I can pay next week")]
    await follow(w)
    assert (await registry.progress(w.store, "acme", "dues")).counts["replied"] == 1


async def test_a_reply_is_offered_at_once_to_an_agent_waiting_on_the_campaigns_queue():
    w, _worker = await sent_world()
    await w.available("amy")
    conversation = await w.arrive(address="+12125550000", body="I can pay next week")
    assert await w.offered("amy") == [conversation]


async def w_history(w, conversation):
    from router import conversations

    return await conversations.history(w.store, "acme", conversation)


async def test_a_contact_from_someone_else_routes_as_usual():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+12125559999", body="hello")
    assert conversation != "cmp-dues-1"
    assert await w.waiting("support") == [conversation]


async def test_delivery_is_counted_from_the_dispatchers_reports():
    w, _worker = await sent_world()
    dispatcher = Dispatcher(w.store)
    with Clock(NOON_NY):  # inside the window, as the dispatcher judges it
        for _id, fields in await w.store.redis.xrange(KEYS.outbound):
            assert await dispatcher.deliver(events.decode_outbound(fields[b"e"]), fields[b"e"]) == "sent"
    status = events.DeliveryStatus(
        tenant="acme", occurred_at=events.now_ms(), channel="sms", message="cmp-dues-1-1", status="delivered"
    )
    results = await follow(w)
    await results.apply("acme", status)
    await results.apply("acme", status)  # a redelivered event counts once
    progress = await registry.progress(w.store, "acme", "dues")
    assert progress.counts["delivered"] == 1 and progress.counts["sent"] == 1


async def test_a_failed_text_is_retried_once_by_email():
    w, worker = await sent_world()
    failed = events.DeliveryStatus(
        tenant="acme",
        occurred_at=events.now_ms(),
        channel="sms",
        message="cmp-dues-1-1",
        status="failed",
        error="30003",
    )
    results = Results(w.store)
    await results.apply("acme", failed)
    assert await worker.step() == 1
    assert [(m.id, m.channel, m.to) for m in await w.outgoing()] == [
        ("cmp-dues-1-1", "sms", "+12125550000"),
        ("cmp-dues-1-2", "email", "jane@example.com"),
    ]
    final = events.DeliveryStatus(
        tenant="acme", occurred_at=events.now_ms(), channel="email", message="cmp-dues-1-2", status="failed"
    )
    await results.apply("acme", final)  # the policy allows two attempts: this one is final
    progress = await registry.progress(w.store, "acme", "dues")
    assert (progress.counts["retried"], progress.counts["failed"], progress.queued) == (1, 1, 0)


async def test_a_failure_reported_after_the_campaign_finished_opens_it_again_for_the_retry():
    with Clock(NOON_NY):
        w, worker = await sent_world()
        [message] = await w.outgoing()
        assert await Dispatcher(w.store).deliver(message, events.encode(message)) == "sent"
        results = await follow(w)  # the dispatcher's report: the text is no longer pending
        assert await worker.step() == 0
        assert (await registry.progress(w.store, "acme", "dues")).state == "finished"
        undelivered = events.DeliveryStatus(
            tenant="acme",
            occurred_at=events.now_ms(),
            channel="sms",
            message="cmp-dues-1-1",
            status="undelivered",
            error="30003",
        )
        await results.apply("acme", undelivered)  # Twilio's status callback, a minute later
        progress = await registry.progress(w.store, "acme", "dues")
        assert (progress.state, progress.queued) == ("running", 1)
        assert await registry.running(w.store, "acme") == ["dues"]
        assert await worker.step() == 1
        assert [(m.id, m.channel) for m in await w.outgoing()][-1] == ("cmp-dues-1-2", "email")


async def test_an_agents_disposition_is_counted_and_a_promise_to_pay_converts():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+12125550000", body="ok")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    await follow(w)
    progress = await registry.progress(w.store, "acme", "dues")
    assert progress.dispositions == {"promise_to_pay": 1} and progress.counts["converted"] == 1
    # Regulation F: a conversation about the debt starts seven quiet days for calls
    assert await w.store.redis.get(KEYS.debt_talked("debt:A-1")) is not None


async def test_a_dispute_stops_further_collections_to_the_customer():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+12125550000", body="this is not my debt")
    await w.available("amy")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", conversation, "disputed")
    await follow(w)
    customer = (await w.conversation(conversation))["customer"]
    assert await w.store.redis.sismember(KEYS.disputes, customer)
    assert await w.store.redis.sismember(KEYS.disputes, "debt:A-1")


def test_unsubscribe_links_cannot_be_forged_or_moved_to_another_tenant():
    key = b"k" * 32
    token = unsubscribe.make_token(key, "acme", "email", "jane@example.com", "dues")
    assert unsubscribe.read_token(key, "acme", token) == ("email", "jane@example.com", "dues")
    forged = unsubscribe.make_token(b"x" * 32, "acme", "email", "bob@example.com", "dues")
    body, mac = token.split(".")
    for bad in (forged, f"{forged.split('.')[0]}.{mac}", body, "garbage"):
        with pytest.raises(unsubscribe.BadToken):
            unsubscribe.read_token(key, "acme", bad)
    with pytest.raises(unsubscribe.BadToken):
        unsubscribe.read_token(key, "globex", token)


async def test_one_click_unsubscribe_suppresses_the_address_at_once():
    w = await world(DEPLOYMENT)
    app = web.Application()
    app[STORE] = w.store
    app[DEPLOYMENT_KEY] = w.deployment
    unsubscribe.setup(app)
    key = await unsubscribe.signing_key(w.store, "acme")
    token = unsubscribe.make_token(key, "acme", "email", "jane@example.com", "dues")
    async with TestClient(TestServer(app)) as client:
        page = await client.get(f"/unsubscribe/acme/{token}")
        assert page.status == 200 and "jane@example.com" in await page.text()
        assert not await w.store.redis.sismember(KEYS.suppression("email"), "jane@example.com")  # a GET changes nothing
        done = await client.post(f"/unsubscribe/acme/{token}", data={"List-Unsubscribe": "One-Click"})
        assert done.status == 200
        assert (await client.post(f"/unsubscribe/acme/{token[:-2]}xx")).status == 404
    assert await w.store.redis.sismember(KEYS.suppression("email"), "jane@example.com")
    [opted] = await w.events(events.OptedOut)
    assert (opted.channel, opted.address) == ("email", "jane@example.com")


AB = """
id = "dues"
tenant = "acme"
kind = "collections"
channel = "sms"
queue = "collections"
pacing = { per_minute = 60000 }
[templates.sms.en]
body = "Hi {{ name }}, {{ balance }} is due."
[[variants]]
name = "A"
share = 50
[[variants]]
name = "B"
share = 50
[variants.templates.sms.en]
body = "{{ name }}: pay {{ balance }} today and save 5%."
"""


async def ab_sent(recipients: int) -> tuple[World, Campaign, list[events.OutboundMessage]]:
    """The A/B campaign sent to `recipients` people: the world, the campaign, the texts queued."""
    w = await world(DEPLOYMENT)
    rows = "".join(f"+1212555{i:04d},,P{i},${i},A-{i}\n" for i in range(recipients))
    campaign = await create_campaign(w, AB, "phone,email,name,balance,account\n" + rows)
    worker = CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)
    while await worker.step():
        pass
    return w, campaign, await w.outgoing()


async def test_ab_variants_split_the_audience_and_are_counted_apart():
    w, campaign, messages = await ab_sent(40)
    for message in messages:
        variant = message.metadata["variant"]
        assert variant == campaign.variant_of(int(message.metadata["campaign_recipient"]))
        assert ("save 5%" in message.body) == (variant == "B")
    replied = next(m for m in messages if m.metadata["variant"] == "B")
    await w.arrive(address=replied.to, body="ok")
    await follow(w)
    progress = await registry.progress(w.store, "acme", "dues")
    a, b = progress.variants["A"], progress.variants["B"]
    assert a["sent"] + b["sent"] == 40 and min(a["sent"], b["sent"]) >= 10
    assert b["replied"] == 1 and "replied" not in a


async def test_a_reply_by_email_to_a_texted_campaign_joins_the_same_conversation():
    w, _worker = await sent_world()
    conversation = await w.arrive(channel="email", address="Jane@Example.com", body="About my bill", subject="Re")
    assert conversation == "cmp-dues-1"
    assert await w.waiting("collections") == [conversation]


class RefusingSender:
    """A channel whose transport refuses by our own rule: the number opted out after queueing."""

    channel = "sms"

    async def send(self, message: events.OutboundMessage) -> str:
        raise Refused(f"{message.to} opted out of SMS")

    async def reconcile(self, message: events.OutboundMessage):
        return "not_sent", ""


async def texts_only_world():
    w = await world(DEPLOYMENT)
    texts_only = CAMPAIGN.replace('fallback_channel = "email"\n', "").split("[templates.email.en]")[0]
    await create_campaign(w, texts_only, AUDIENCE)
    assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 1
    return w


async def test_a_recipient_who_opted_out_after_queueing_is_refused_at_dispatch_and_counted_suppressed():
    w = await texts_only_world()
    dispatcher = Dispatcher(w.store, {"sms": RefusingSender()})
    [(_id, fields)] = await w.store.redis.xrange(KEYS.outbound)
    with Clock(NOON_NY):  # inside the window, as the dispatcher judges it before the sender refuses
        assert await dispatcher.deliver(events.decode_outbound(fields[b"e"]), fields[b"e"]) == "refused"
    results = await follow(w)
    for event in await w.events(events.DeliveryStatus):
        await results.apply("acme", event)  # a redelivered report changes nothing
    progress = await registry.progress(w.store, "acme", "dues")
    c = progress.counts
    assert (c["sent"], c["failed"], c["suppressed"]) == (0, 0, 1)  # it never left
    assert progress.share == 1.0  # counted once: nobody is left to send to
    status = (await w.store.redis.hget(KEYS.campaign_status("dues"), "1")).decode()
    assert status == "suppressed:refused:1:sms:refused: +12125550000 opted out of SMS"


async def test_a_refusal_reported_by_a_provider_stays_a_failure():
    w = await texts_only_world()
    faxed = events.DeliveryStatus(
        tenant="acme",
        occurred_at=events.now_ms(),
        channel="sms",
        message="cmp-dues-1-1",
        status="refused",
        provider_id="CA123",  # the provider had it: its refusal is not our opt-out
        error="a fax machine answered",
    )
    await Results(w.store).apply("acme", faxed)
    c = (await registry.progress(w.store, "acme", "dues")).counts
    assert (c["sent"], c["failed"], c["suppressed"]) == (1, 1, 0)


async def test_the_results_report_per_campaign_and_variant():
    w, _campaign, messages = await ab_sent(20)
    b_message = next(m for m in messages if m.metadata["variant"] == "B")
    conversation = await w.arrive(address=b_message.to, body="I will pay on Friday")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    await follow(w)

    report = await results_report(w.store, "acme", "dues")
    whole, a, b = report.rows
    assert (whole.variant, a.variant, b.variant) == ("", "A", "B")
    assert whole.counts["sent"] == 20 == a.counts["sent"] + b.counts["sent"]
    assert (b.counts["replied"], b.counts["converted"], b.dispositions) == (1, 1, {"promise_to_pay": 1})
    assert (whole.counts["promised_cents"], b.counts["promised_cents"], a.counts["promised_cents"]) == (12050, 12050, 0)
    assert b.conversion_rate == 1 / b.counts["sent"] and a.conversion_rate == 0.0
    assert whole.dispositions == {"promise_to_pay": 1} and whole.conversion_rate == 1 / 20
    kinds = ["promise_to_pay", "paid", "disputed", "wrong_number", "not_interested", "do_not_call"]
    assert report.dispositions == kinds

    out = io.StringIO()
    write_csv(report, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "campaign,variant,share,sent,delivered,failed,suppressed,replied,converted,promised,conversion_rate,"
        "promise_to_pay,paid,disputed,wrong_number,not_interested,do_not_call"
    )
    assert lines[1] == "dues,all,100,20,0,0,0,1,1,120.50,0.0500,1,0,0,0,0,0"
    assert lines[3].startswith(f"dues,B,50,{b.counts['sent']},0,0,0,1,1,120.50,")
