"""The campaigns worker: compliant, paced, at most once per attempt, resumable."""

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from channels.sms import optout
from router import events
from router.campaigns import registry
from router.campaigns.model import CampaignError, parse_campaign
from router.keys import Keys
from router.scripts import run_pipelined
from tests.factories import deployment, world
from tests.workers import campaigns
from tests.workers.campaigns import Clock
from workers.campaigns import cli as campaign_cli
from workers.campaigns import pacing
from workers.campaigns import scripts as campaign_scripts
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
DEPLOYMENT = """
[[tenants]]
id = "acme"
entry = { default = "support" }
email = { addresses = ["help@acme.example"] }  # where campaign email leaves from, and its mailto: unsubscribe goes

[[tenants.queues]]
id = "support"

[[tenants.queues]]
id = "collections"
priority = 5

[[tenants.agents]]
id = "amy"
"""
# Midday in New York, a Tuesday: inside every window below for +1212 numbers. In the
# future, so that what the worker schedules from it is not due yet on Redis's own clock.
NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)


def definition(kind: str = "collections", channel: str = "sms", **settings: str) -> str:
    """A campaign file; each keyword is a top-level TOML setting (value as TOML)."""
    settings.setdefault("pacing", "{ per_minute = 6000 }")
    return f"""
id = "spring"
tenant = "acme"
kind = "{kind}"
channel = "{channel}"
queue = "collections"
{chr(10).join(f"{k} = {v}" for k, v in settings.items())}
[templates.{channel}.en]
subject = "About account {{{{ account }}}}"
body = "Hi {{{{ name }}}}, {{{{ balance }}}} is due."
"""


def people(count: int, start: int = 0, prefix: str = "+1212555", **columns: str) -> str:
    extra = "".join(f",{k}" for k in columns)
    rows = [
        f"{prefix}{start + i:04d},Person {i},${i}.00,A-{i}" + "".join(f",{v}" for v in columns.values())
        for i in range(count)
    ]
    return "phone,name,balance,account" + extra + "\n" + "\n".join(rows) + "\n"


async def launched(w, csv_text: str, text: str | None = None):
    """This module's campaign (or `text`) launched to the people in csv_text."""
    return await campaigns.create_campaign(w, text or definition(), csv_text)


def worker(w, **kwargs) -> CampaignWorker:
    kwargs.setdefault("clock", lambda: NOON_NY)
    return CampaignWorker(w.store, w.deployment, **kwargs)


DAY_MS = 86_400_000
NOON_NY_MS = int(NOON_NY.timestamp() * 1000)


async def earlier_attempts(w, channel: str, subject: str, *, count: int, days_ago: int) -> None:
    """`count` attempts on `subject` an hour apart, the first `days_ago` days before NOON_NY."""
    attempts = {f"old-{i}": NOON_NY_MS - days_ago * DAY_MS + i * 3_600_000 for i in range(count)}
    await w.store.redis.zadd(KEYS.contact_attempts(channel, subject), attempts)


async def drain(*workers: CampaignWorker) -> None:
    for _ in range(50):
        if not sum(await asyncio.gather(*(wk.step() for wk in workers))):
            return
    raise AssertionError("the workers never ran out of work")


async def test_each_recipient_gets_one_rendered_message_with_a_deterministic_id():
    w = await world(DEPLOYMENT)
    await launched(w, people(3))
    await drain(worker(w))
    messages = await w.outgoing()
    assert [m.id for m in messages] == ["cmp-spring-1-1", "cmp-spring-2-1", "cmp-spring-3-1"]
    first = messages[0]
    assert (first.to, first.channel, first.campaign) == ("+12125550000", "sms", "spring")
    assert first.body == "Hi Person 0, $0.00 is due. Reply STOP to opt out."
    progress = await registry.progress(w.store, "acme", "spring")
    assert progress.counts["sent"] == 3 and progress.queued == 0


async def test_suppressed_recipients_get_nothing():
    w = await world(DEPLOYMENT)
    await optout.suppress(w.store, "acme", "+12125550000")  # texted STOP
    await w.store.redis.sadd(KEYS.do_not_contact, "+12125550001")
    await w.store.redis.sadd(KEYS.disputes, "debt:A-2")  # an open dispute about the debt
    await launched(w, people(4))
    await drain(worker(w))
    assert [m.to for m in await w.outgoing()] == ["+12125550003"]
    statuses = await w.store.redis.hgetall(KEYS.campaign_status("spring"))
    assert statuses[b"1"] == b"suppressed:opted_out"
    assert statuses[b"2"] == b"suppressed:do_not_contact"
    assert statuses[b"3"] == b"suppressed:disputed"
    assert (await registry.progress(w.store, "acme", "spring")).counts["suppressed"] == 3


async def test_a_customer_with_an_open_dispute_gets_no_collections():
    w = await world(DEPLOYMENT)
    conversation = await w.arrive(address="+12125550000", body="I dispute this")
    customer = (await w.conversation(conversation))["customer"]
    await w.store.redis.sadd(KEYS.disputes, customer)
    await launched(w, people(1))
    await drain(worker(w))
    assert await w.outgoing() == []


async def test_a_recipient_asleep_in_their_time_zone_is_rescheduled_to_8_am_local():
    w = await world(DEPLOYMENT)
    await launched(w, people(2, timezone="Asia/Tokyo"), definition(window='{ start = "07:00", end = "22:00" }'))
    # 01:00 in Tokyo at NOON_NY; collections may start at 08:00, whatever the campaign asks
    await worker(w).step()
    assert await w.outgoing() == []
    due = await w.store.redis.zrange(KEYS.campaign_due("spring"), 0, -1, withscores=True)
    eight_tokyo = dt.datetime(2027, 6, 2, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert [score for _seq, score in due] == [eight_tokyo.timestamp() * 1000] * 2
    assert (await registry.progress(w.store, "acme", "spring")).counts["rescheduled"] == 2


async def test_a_row_zone_that_contradicts_the_number_waits_for_the_window_in_both():
    """A New York number whose row says Pacific/Honolulu, at 21:30 in New York (15:30 in
    Honolulu): it used to go, past the window's 20:00 (and the 21:00 collections limit) where
    the number is."""
    with Clock(dt.datetime(2027, 6, 2, 1, 30, tzinfo=dt.UTC)) as clock:
        w = await world(DEPLOYMENT)
        await launched(w, people(1, timezone="Pacific/Honolulu"))
        wk = CampaignWorker(w.store, w.deployment)
        await wk.step()
        assert await w.outgoing() == []
        [(_seq, due)] = await w.store.redis.zrange(KEYS.campaign_due("spring"), 0, -1, withscores=True)
        three_pm_ny = dt.datetime(2027, 6, 2, 19, 0, tzinfo=dt.UTC)  # 09:00 in Honolulu
        assert due == three_pm_ny.timestamp() * 1000
        clock.to(three_pm_ny)
        await wk.step()
        [message] = await w.outgoing()
        assert message.metadata["zones"] == "Pacific/Honolulu,America/New_York"  # the dispatcher judges both too


async def test_pause_stops_sending_and_resume_carries_on():
    w = await world(DEPLOYMENT)
    await launched(w, people(30))
    wk = worker(w, batch=10)
    await wk.step()
    assert len(await w.outgoing()) == 10
    await registry.change(w.store, "acme", "spring", "pause")
    assert await wk.step() == 0
    assert len(await w.outgoing()) == 10
    with pytest.raises(CampaignError, match="cannot pause"):
        await registry.change(w.store, "acme", "spring", "pause")
    await registry.change(w.store, "acme", "spring", "resume")
    await drain(wk)
    assert len(await w.outgoing()) == 30


class PausedMidBatch(CampaignWorker):
    """An operator pauses while this worker holds a claimed batch."""

    async def _send(self, tenant, loaded, now_ms, pending, later, final, agent=""):
        await registry.change(self.store, tenant, loaded.campaign.id, "pause")
        return await super()._send(tenant, loaded, now_ms, pending, later, final, agent)


async def test_a_pause_stops_even_the_batch_in_flight():
    w = await world(DEPLOYMENT)
    await launched(w, people(5))
    await PausedMidBatch(w.store, w.deployment, clock=lambda: NOON_NY).step()
    assert await w.outgoing() == []
    await registry.change(w.store, "acme", "spring", "resume")
    await drain(worker(w))
    assert len(await w.outgoing()) == 5


async def test_cancel_sends_nothing_more_and_cannot_be_undone():
    w = await world(DEPLOYMENT)
    await launched(w, people(3))
    await registry.change(w.store, "acme", "spring", "cancel")
    assert await worker(w).step() == 0
    with pytest.raises(CampaignError, match="cannot resume"):
        await registry.change(w.store, "acme", "spring", "resume")
    progress = await registry.progress(w.store, "acme", "spring")
    assert (progress.state, progress.queued) == ("cancelled", 3)


class Crash(Exception):
    """The worker process dies."""


class DiesMidBatch(CampaignWorker):
    """Sends the first `survive` recipients of its batch, then dies before the rest."""

    def __init__(self, *args, survive: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.survive = survive

    async def _send(self, tenant, loaded, now_ms, pending, later, final, agent=""):
        await super()._send(tenant, loaded, now_ms, pending[: self.survive], later, final, agent)
        raise Crash


async def test_a_worker_killed_between_claim_and_publish_is_resumed_without_duplicates_or_gaps():
    w = await world(DEPLOYMENT)
    await launched(w, people(10))
    dying = DiesMidBatch(w.store, w.deployment, survive=4, lease_ms=50, clock=lambda: NOON_NY)
    with pytest.raises(Crash):
        await dying.run_batch("acme", "spring")
    assert len(await w.outgoing()) == 4
    assert await worker(w).step() == 0  # the dead worker's claim holds until its lease ends
    await asyncio.sleep(0.1)
    await drain(worker(w))
    ids = [m.id for m in await w.outgoing()]
    assert sorted(ids) == sorted(f"cmp-spring-{n}-1" for n in range(1, 11))


async def test_a_stale_worker_replaying_its_claim_sends_nothing_twice():
    w = await world(DEPLOYMENT)
    campaign = await launched(w, people(3))
    seqs, blobs, statuses, _next = await campaign_scripts.claim(w.store, "acme", "spring", count=10, lease_ms=60_000)
    claimed = list(zip(seqs, blobs, statuses, strict=True))
    first, stale = worker(w), worker(w)
    loaded, _ = await first._load("acme", campaign.id)
    assert await first._handle("acme", loaded, NOON_NY, claimed) == 3
    # a worker that claimed the same recipients before its lease ran out finally gets to send
    assert await stale._handle("acme", loaded, NOON_NY, claimed) == 0
    assert len(await w.outgoing()) == 3


async def test_settling_a_batch_in_one_call_leaves_a_recipient_sent_meanwhile_alone():
    w = await world(DEPLOYMENT)
    await launched(w, people(3))
    status, due, stats = KEYS.campaign_status("spring"), KEYS.campaign_due("spring"), KEYS.campaign_stats("spring")
    await w.store.redis.hset(status, "2", "sent:1:sms")  # another worker's send got there first
    entries = [
        campaign_scripts.Settlement(1, "later", 5, "rescheduled"),
        campaign_scripts.Settlement(2, "final", "skipped:x", "skipped"),
        campaign_scripts.Settlement(3, "final", "skipped:no_window", "skipped"),
    ]
    [settled] = await run_pipelined(w.store.redis, [campaign_scripts.settle_call(w.store, "acme", "spring", entries)])
    assert settled == 2
    assert await w.store.redis.hmget(status, ["1", "2", "3"]) == [None, b"sent:1:sms", b"skipped:no_window"]
    assert await w.store.redis.zrange(due, 0, -1, withscores=True) == [(b"1", 5.0)]
    counts = await w.store.redis.hmget(stats, ["rescheduled", "skipped"])
    assert counts == [b"1", b"1"]


async def test_pacing_spends_no_more_than_the_bucket_holds():
    w = await world(DEPLOYMENT)
    await launched(w, people(20), definition(pacing="{ per_minute = 60, burst = 5 }"))
    wk = worker(w)
    await wk.step()
    await wk.step()
    assert len(await w.outgoing()) == 5  # then one a second


async def test_collections_calls_stop_at_seven_per_debt_in_seven_days():
    w = await world(DEPLOYMENT)
    await earlier_attempts(w, "voice", "debt:A-0", count=7, days_ago=6)
    await launched(w, people(2), definition(channel="voice"))
    await drain(worker(w))
    assert [m.to for m in await w.outgoing()] == ["+12125550001"]  # A-1 is free; A-0 waits
    [(seq, due)] = await w.store.redis.zrange(KEYS.campaign_due("spring"), 0, -1, withscores=True)
    assert seq == b"1" and due >= NOON_NY_MS + DAY_MS  # until the oldest call is seven days old


async def test_email_campaigns_carry_one_click_unsubscribe_headers():
    w = await world(DEPLOYMENT)
    await launched(
        w, "email,name,balance,account\nj@example.com,J,1,A\n", definition(kind="cross_sell", channel="email")
    )
    await drain(worker(w, public_url="https://cc.example"))
    [message] = await w.outgoing()
    assert message.subject == "About account A"
    link, mailto = message.metadata["header:List-Unsubscribe"].split(", ")
    assert link.startswith("<https://cc.example/unsubscribe/acme/")
    assert mailto.startswith("<mailto:help@acme.example?subject=unsubscribe%20")
    assert message.metadata["header:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_an_email_campaign_needs_its_tenant_s_address_at_create_and_again_at_launch(capsys):
    """Its mailto: unsubscribe goes there (and mail leaves from there): without one, no
    campaign email could carry a working unsubscribe, so none is created or launched."""
    w = await world(DEPLOYMENT)
    bare = deployment(DEPLOYMENT.replace('email = { addresses = ["help@acme.example"] }', ""))
    offer = parse_campaign(definition(kind="cross_sell", channel="email"))
    with pytest.raises(CampaignError, match=r"tenant acme has no email address .* no working unsubscribe"):
        await registry.create(w.store, bare, offer)
    email_too = '[templates.email.en]\nsubject = "Your account"\nbody = "Hi"\n'
    texts = parse_campaign(definition(fallback_channel='"email"') + email_too)  # a fallback to email needs it too
    with pytest.raises(CampaignError, match="no email address"):
        await registry.create(w.store, bare, texts)
    # Created while the tenant had an address, launched after it lost it: refused, still a draft.
    await campaigns.create_campaign(
        w, definition(kind="cross_sell", channel="email"), "email,name\nj@example.com,J\n", launch=False
    )
    with pytest.raises(CampaignError, match=r"cannot launch campaign spring: .*no email address"):
        await registry.change(w.store, "acme", "spring", "launch", deployment=bare)
    assert (await registry.load(w.store, "acme", "spring"))[1] == "draft"


async def test_an_email_whose_tenant_lost_its_address_after_launch_is_skipped_with_the_reason_never_sent():
    w = await world(DEPLOYMENT)
    await launched(
        w, "email,name,balance,account\nj@example.com,J,1,A\n", definition(kind="cross_sell", channel="email")
    )
    bare = deployment(DEPLOYMENT.replace('email = { addresses = ["help@acme.example"] }', ""))
    await drain(CampaignWorker(w.store, bare, clock=lambda: NOON_NY))
    assert await w.outgoing() == []
    progress = await registry.progress(w.store, "acme", "spring")
    assert (progress.counts["sent"], progress.counts["skipped"]) == (0, 1)
    [status] = await w.store.redis.hvals(KEYS.campaign_status("spring"))
    assert b"no email address" in status


async def test_a_campaign_must_name_a_queue_of_its_tenant():
    w = await world(DEPLOYMENT)
    with pytest.raises(CampaignError, match="no queue 'nowhere'"):
        await registry.create(
            w.store, w.deployment, parse_campaign(definition().replace('queue = "collections"', 'queue = "nowhere"'))
        )


async def test_nothing_goes_before_the_start_and_the_campaign_finishes_at_its_end():
    w = await world(DEPLOYMENT)
    await launched(w, people(2), definition(start="2027-06-02T00:00:00Z", end="2027-06-03T00:00:00Z"))
    assert await worker(w).step() == 0  # NOON_NY is the day before the start
    progress = await registry.progress(w.store, "acme", "spring")
    assert (progress.state, progress.queued) == ("running", 2)
    later = CampaignWorker(w.store, w.deployment, clock=lambda: dt.datetime(2027, 6, 3, 16, tzinfo=dt.UTC))
    assert await later.step() == 0
    assert (await registry.progress(w.store, "acme", "spring")).state == "finished"
    assert await w.outgoing() == []


async def test_a_recipient_missing_a_template_field_is_skipped_and_the_rest_go():
    w = await world(DEPLOYMENT)
    await launched(w, "phone,name,account\n+12125550000,Jane,A-1\n", definition())  # no balance column
    await drain(worker(w))
    assert await w.outgoing() == []
    status = (await w.store.redis.hget(KEYS.campaign_status("spring"), "1")).decode()
    assert status == "skipped:template sms/en, line 1: 'balance' is undefined"
    assert (await registry.progress(w.store, "acme", "spring")).counts["skipped"] == 1


def now_utc() -> dt.datetime:
    """Redis's own clock records the attempts caps count, so these tests run on it."""
    return dt.datetime.now(dt.UTC)


ALL_DAY = '{ start = "00:00", end = "24:00" }'


async def run_campaign(w, campaign_id: str, kind: str, csv_text: str, caps: str = "") -> None:
    text = definition(kind=kind, window=ALL_DAY).replace('id = "spring"', f'id = "{campaign_id}"') + caps
    await launched(w, csv_text, text)
    await drain(worker(w, clock=now_utc))


TEXTS_CAP = '[[caps]]\nchannel = "sms"\nmax = 1\ndays = 7\n'


async def test_a_text_cap_counts_the_texts_of_campaigns_without_it():
    w = await world(DEPLOYMENT)
    await run_campaign(w, "first", "cross_sell", people(1))  # no caps of its own
    await run_campaign(w, "second", "cross_sell", people(2), TEXTS_CAP)
    assert [(m.campaign, m.to) for m in await w.outgoing()] == [
        ("first", "+12125550000"),
        ("second", "+12125550001"),  # +12125550000 had its one text this week
    ]
    progress = await registry.progress(w.store, "acme", "second")
    assert (progress.counts["sent"], progress.counts["rescheduled"], progress.queued) == (1, 1, 1)


def daytime_prefix() -> str:
    """A number's first digits in a region where it is now between 10:00 and 20:00, so
    collections' legal hours (08:00-21:00 where the debtor is) let a text go on the real
    clock these tests run on: New York, London or Tokyo, one of which always is."""
    for prefix, zone in (("+1212555", "America/New_York"), ("+44207946", "Europe/London"), ("+8135555", "Asia/Tokyo")):
        if 10 <= dt.datetime.now(ZoneInfo(zone)).hour < 20:
            return prefix
    raise AssertionError("no region in daytime")


async def test_a_kinds_cap_leaves_other_kinds_texts_out_and_collections_count_per_debt():
    w = await world(DEPLOYMENT)
    person = people(1, prefix=daytime_prefix())
    await run_campaign(w, "notice", "notice", person)
    await run_campaign(w, "offer", "cross_sell", person, TEXTS_CAP)  # a notice is not an offer
    await run_campaign(w, "dues", "collections", person, TEXTS_CAP)  # debt A-0: never texted
    await run_campaign(w, "dues2", "collections", person, TEXTS_CAP)  # debt A-0: texted by dues
    assert [m.campaign for m in await w.outgoing()] == ["notice", "offer", "dues"]
    assert await w.store.redis.zcard(KEYS.contact_attempts("sms", "debt:A-0")) == 1


async def test_a_short_cap_never_cuts_short_the_history_a_longer_one_counts():
    w = await world(DEPLOYMENT)
    long_cap = '[[caps]]\nchannel = "sms"\nmax = 5\ndays = 90\n'
    await run_campaign(w, "quarterly", "cross_sell", people(1), long_cap)
    await run_campaign(w, "weekly", "cross_sell", people(1), TEXTS_CAP.replace("max = 1", "max = 5"))
    key = KEYS.contact_attempts("sms", "cross_sell:addr:+12125550000")
    assert await w.store.redis.zcard(key) == 2
    assert await w.store.redis.pttl(key) > 89 * 86_400_000


async def test_a_collections_text_cap_of_three_in_seven_days_holds_the_fourth_text():
    w = await world(DEPLOYMENT)
    await earlier_attempts(w, "sms", "debt:A-0", count=3, days_ago=5)
    await launched(w, people(2), definition() + '[[caps]]\nchannel = "sms"\nmax = 3\ndays = 7\n')
    await drain(worker(w))
    assert [m.to for m in await w.outgoing()] == ["+12125550001"]
    [(seq, due)] = await w.store.redis.zrange(KEYS.campaign_due("spring"), 0, -1, withscores=True)
    assert seq == b"1" and due >= NOON_NY_MS + 2 * DAY_MS  # until the first of the three is seven days old


def voice(machine: str) -> str:
    return definition(channel="voice") + f'[voice]\nmachine_message = "{machine}"\n'


async def test_a_call_carries_its_answering_machine_message_rendered_when_queued():
    w = await world(DEPLOYMENT)
    await launched(w, people(1), voice("Please call Acme back about {{ account }}."))
    await drain(worker(w))
    [call] = await w.outgoing()
    assert call.metadata["machine_message"] == "Please call Acme back about A-0."


async def test_a_machine_message_too_long_to_say_skips_the_recipient_with_the_reason():
    w = await world(DEPLOYMENT)
    long = "{% for i in range(900) %}{{ name }}{% endfor %}"  # "Person 0" x 900: 7,200 characters
    await launched(w, people(1), voice(long))
    await drain(worker(w))
    assert await w.outgoing() == []
    status = (await w.store.redis.hget(KEYS.campaign_status("spring"), "1")).decode()
    assert status == "skipped:template voice machine: 7,200 characters, more than a call can say (4,096)"
    assert (await registry.progress(w.store, "acme", "spring")).counts["skipped"] == 1


async def test_state_changes_are_recorded_by_name_and_the_old_misspelt_ones_still_read(capsys):
    w = await world(DEPLOYMENT)
    await launched(w, people(1))
    await registry.change(w.store, "acme", "spring", "pause")
    await registry.change(w.store, "acme", "spring", "resume")
    record = await w.store.redis.hgetall(KEYS.campaign("spring"))
    assert {b"launched_at", b"paused_at", b"resumed_at"} <= set(record)
    assert not {b"pauseed_at", b"resumeed_at"} & set(record)
    # a campaign paused and resumed by a version that wrote "{action}ed_at"
    await w.store.redis.hdel(KEYS.campaign("spring"), "paused_at", "resumed_at")
    paused, resumed = 1811851200000, 1811854800000  # 12:00 and 13:00 UTC, 1 June 2027
    await w.store.redis.hset(KEYS.campaign("spring"), mapping={"pauseed_at": paused, "resumeed_at": resumed})
    changed = await registry.changes(w.store, "acme", "spring")
    assert (changed["pause"], changed["resume"]) == (paused, resumed) and "cancel" not in changed
    await campaign_cli._progress(w.store, "acme", "spring", watch=False)
    assert "paused 2027-06-01 12:00 UTC  resumed 2027-06-01 13:00 UTC" in capsys.readouterr().out


async def test_recipients_go_in_file_order():
    w = await world(DEPLOYMENT)
    await launched(w, people(12))
    wk = worker(w, batch=5)
    await drain(wk)
    assert [m.id for m in await w.outgoing()] == [f"cmp-spring-{n}-1" for n in range(1, 13)]  # not 1, 10, 11, 12, 2...


async def test_a_tenant_pace_below_the_campaigns_makes_the_worker_wait_for_a_token_not_spin():
    with Clock(NOON_NY) as clock:
        w = await world(DEPLOYMENT)
        await pacing.set_channel_limit(w.store, "acme", "sms", 60)  # `campaign pace sms 60`: one a second
        await launched(w, people(20))  # the campaign's own pace: 6,000 a minute
        due = KEYS.campaign_due("spring")
        wk = CampaignWorker(w.store, w.deployment)
        assert await wk.step() == 1  # a batch as big as the tenant's pace lets out
        waiting = await w.store.redis.zrange(due, 0, -1, withscores=True)
        assert [score for _seq, score in waiting] == [float(n) for n in range(2, 21)]  # none claimed, none put back
        clock.forward(0.5)
        assert await wk.step() == 0  # no token yet (half of one): it waits...
        assert await w.store.redis.zrange(due, 0, -1, withscores=True) == waiting
        bucket = await w.store.redis.hgetall(KEYS.rate_bucket("channel:sms"))
        clock.forward(0.25)
        assert await wk.step() == 0
        assert await w.store.redis.hgetall(KEYS.rate_bucket("channel:sms")) == bucket  # ...without asking again
        clock.forward(0.25)
        assert await wk.step() == 1
        assert [m.id for m in await w.outgoing()] == ["cmp-spring-1-1", "cmp-spring-2-1"]
        assert (await registry.progress(w.store, "acme", "spring")).counts["rescheduled"] == 0


async def test_a_campaign_whose_recipients_are_all_settled_finishes_and_is_polled_no_more():
    with Clock(NOON_NY):
        w = await world(DEPLOYMENT)
        await launched(w, people(3))
        wk = CampaignWorker(w.store, w.deployment)
        assert await wk.step() == 3
        assert await wk.step() == 0
        # nobody is due, but the texts are still with the dispatcher: not finished yet
        assert (await registry.progress(w.store, "acme", "spring")).state == "running"
        dispatcher = Dispatcher(w.store)
        for message in await w.outgoing():
            assert await dispatcher.deliver(message, events.encode(message)) == "sent"
        results = Results(w.store)
        for event in await w.events(events.DeliveryStatus):
            await results.apply("acme", event)
        assert await wk.step() == 0
        progress = await registry.progress(w.store, "acme", "spring")
        assert (progress.state, progress.queued, progress.counts["sent"]) == ("finished", 0, 3)
        assert await registry.running(w.store, "acme") == []  # the workers' rounds leave it out
        assert "finish" in await registry.changes(w.store, "acme", "spring")


async def test_a_campaign_with_a_recipient_due_later_is_not_finished():
    with Clock(NOON_NY):
        w = await world(DEPLOYMENT)
        # 01:00 in Tokyo, where the row says she is; due at 08:00 there (19:00 in New York,
        # where her number is, and both must be inside the window)
        await launched(w, people(1, timezone="Asia/Tokyo"), definition(window='{ start = "08:00", end = "21:00" }'))
        wk = CampaignWorker(w.store, w.deployment)
        await wk.step()
        assert await wk.step() == 0
        progress = await registry.progress(w.store, "acme", "spring")
        assert (progress.state, progress.queued) == ("running", 1)
