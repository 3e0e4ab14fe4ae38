"""Business hours per queue, in its own time zone, and what happens after hours."""

import datetime as dt

import pytest

from router import events, intake, scripts
from router.hours import BusinessHours
from tests.factories import contact, deployment, world

UTC = dt.UTC
# 2025-03-03 is a Monday.
MONDAY_10_UTC = dt.datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def test_open_inside_a_range_and_closed_outside_it():
    hours = BusinessHours(mon="09:00-17:00")
    assert hours.is_open(MONDAY_10_UTC)
    assert hours.is_open(MONDAY_10_UTC.replace(hour=9))  # the opening minute counts
    assert not hours.is_open(MONDAY_10_UTC.replace(hour=8, minute=59))
    assert not hours.is_open(MONDAY_10_UTC.replace(hour=17, minute=1))


def test_a_day_without_hours_is_closed():
    hours = BusinessHours(mon="09:00-17:00")
    assert not hours.is_open(MONDAY_10_UTC + dt.timedelta(days=1))
    assert not BusinessHours(mon="closed").is_open(MONDAY_10_UTC)


def test_split_ranges_close_for_lunch():
    hours = BusinessHours(mon="08:00-12:00, 13:00-18:00")
    assert hours.is_open(MONDAY_10_UTC)
    assert not hours.is_open(MONDAY_10_UTC.replace(hour=12, minute=30))
    assert hours.is_open(MONDAY_10_UTC.replace(hour=15))


def test_hours_are_read_in_the_queues_time_zone():
    # 10:00 UTC is 05:00 in New York (EST in March before DST starts).
    hours = BusinessHours(timezone="America/New_York", mon="09:00-17:00")
    assert not hours.is_open(MONDAY_10_UTC)
    assert hours.is_open(MONDAY_10_UTC.replace(hour=15))


def test_a_time_zone_shifts_the_weekday_too():
    # Monday 23:30 UTC is already Tuesday in Tokyo.
    hours = BusinessHours(timezone="Asia/Tokyo", tue="08:00-09:00")
    assert hours.is_open(MONDAY_10_UTC.replace(hour=23, minute=30))


def test_24_00_means_until_the_end_of_the_day():
    hours = BusinessHours(mon="00:00-24:00")
    assert hours.is_open(MONDAY_10_UTC.replace(hour=23, minute=59, second=59))
    assert hours.is_open(MONDAY_10_UTC.replace(hour=0, minute=0))


def test_holidays_close_the_whole_day():
    hours = BusinessHours(mon="00:00-24:00", holidays=["2025-03-03"])
    assert not hours.is_open(MONDAY_10_UTC)
    assert hours.is_open(MONDAY_10_UTC + dt.timedelta(days=7))


# Every day closed: whatever the clock says, it is after hours.
ALWAYS_CLOSED = """
[[tenants]]
id = "acme"
entry = {{ default = "front" }}

[[tenants.queues]]
id = "front"
target = "'support' in skills"
hours = {{ timezone = "UTC" }}
after_hours = {after_hours}

[[tenants.queues]]
id = "night"
target = "'night' in skills"

[[tenants.agents]]
id = "amy"
skills = {{ support = 1 }}

[[tenants.agents]]
id = "owl"
skills = {{ night = 1 }}
"""


def test_a_queue_without_hours_is_always_open():
    tenant = deployment(ALWAYS_CLOSED.format(after_hours="{}")).tenant("acme")
    assert intake.pick_queue(tenant, contact(queue="night"), MONDAY_10_UTC) == ("night", False)


def test_after_hours_the_contact_is_still_queued_by_default():
    tenant = deployment(ALWAYS_CLOSED.format(after_hours="{}")).tenant("acme")
    assert intake.pick_queue(tenant, contact(), MONDAY_10_UTC) == ("front", True)


def test_after_hours_overflow_sends_new_contacts_to_another_queue():
    tenant = deployment(ALWAYS_CLOSED.format(after_hours='{ action = "overflow", queue = "night" }')).tenant("acme")
    assert intake.pick_queue(tenant, contact(), MONDAY_10_UTC) == ("night", True)


async def test_an_overflowed_contact_is_offered_to_the_after_hours_team():
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "overflow", queue = "night" }'))
    await w.available("amy", "owl")
    conversation = await w.arrive()
    assert (await w.conversation(conversation))["queue"] == "night"
    assert await w.offered("owl") == [conversation]
    assert await w.offered("amy") == []


async def test_after_hours_autoreply_answers_on_the_same_channel_and_still_queues():
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply", message = "We open at 8." }'))
    conversation = await w.arrive(channel="sms", address="+1 555 123 0000")
    [reply] = await w.outgoing()
    assert (reply.channel, reply.to, reply.body) == ("sms", "+15551230000", "We open at 8.")
    assert reply.automatic
    assert reply.conversation == conversation
    assert await w.waiting("front") == [conversation]


async def test_after_hours_autoreply_never_answers_an_automatic_message():
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply" }'))
    await w.arrive(channel="email", address="robot@example.com", metadata={"auto_submitted": "auto-replied"})
    assert await w.store.redis.xlen(w.keys.outbound) == 0


async def test_after_hours_autoreply_is_sent_once_per_conversation():
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply" }'))
    first = await w.arrive(body="hello?")
    second = await w.arrive(body="anyone there?")
    assert first == second
    assert await w.store.redis.xlen(w.keys.outbound) == 1


async def test_an_after_hours_autoreply_replayed_for_the_same_contact_is_queued_once():
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply" }'))
    conversation = await w.arrive(body="hello?")
    [contact_id] = [e.message for e in await w.events(events.MessageAdded)]
    item = contact(id=contact_id, body="hello?")
    # the store's client sends a command again when its answer was lost
    await intake._auto_reply(w.store, w.tenant, item, conversation, "front")
    [reply] = await w.outgoing()
    assert reply.id == f"{contact_id}.autoreply"


@pytest.fixture
def answer_lost(monkeypatch):
    """Every intake call runs and its answer is lost: the client sends it again, which
    finds the contacts stored and their entries acknowledged."""
    run_pipelined = scripts.run_pipelined

    async def twice(redis, calls):
        await run_pipelined(redis, calls)
        return await run_pipelined(redis, calls)

    monkeypatch.setattr(scripts, "run_pipelined", twice)


async def test_after_hours_autoreply_goes_out_when_the_intake_calls_answer_was_lost(answer_lost):
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply", message = "We open at 8." }'))
    conversation = await w.arrive(channel="sms", address="+1 555 123 0000")
    [reply] = await w.outgoing()
    assert (reply.conversation, reply.body) == (conversation, "We open at 8.")
    assert await w.waiting("front") == [conversation]


async def test_a_contact_joining_a_conversation_after_hours_gets_no_autoreply_after_a_lost_answer(answer_lost):
    w = await world(ALWAYS_CLOSED.format(after_hours='{ action = "autoreply" }'))
    first = await w.arrive(body="hello?")
    assert await w.arrive(body="anyone there?") == first
    assert len(await w.outgoing()) == 1  # the first contact's, only


async def test_a_contact_stored_in_hours_gets_no_autoreply_from_a_worker_passing_it_over_after_hours(monkeypatch):
    # Open all day every day but today: the call that stored the contact ran yesterday (as
    # far as the conversation's record says), the one that passes it over runs now.
    today = dt.datetime.now(UTC).date()
    days = ", ".join(f'{day} = "00:00-24:00"' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    hours = f'{{{{ timezone = "UTC", {days}, holidays = ["{today.isoformat()}"] }}}}'
    config = ALWAYS_CLOSED.replace('{{ timezone = "UTC" }}', hours)
    w = await world(config.format(after_hours='{ action = "autoreply" }'))
    item = contact(w.tenant.id, body="hello?")
    yesterday_ms = int((dt.datetime.now(UTC) - dt.timedelta(days=1)).timestamp() * 1000)
    run_pipelined = scripts.run_pipelined

    async def stored_yesterday(redis, calls):
        await run_pipelined(redis, calls)
        await w.store.redis.hset(w.keys.conversation(item.id), "created_at", yesterday_ms)
        return await run_pipelined(redis, calls)

    monkeypatch.setattr(scripts, "run_pipelined", stored_yesterday)
    assert await w.deliver(item) == item.id
    assert await w.outgoing() == []
