"""An opt-out on one channel covers the person's other channels for the tenant (its
`opt_out_scope`, "person" by default; "channel" keeps each list to its own channel), when
a message is queued and when it leaves (lib.lua's contact_refusal). The cases are the
audit's: an SMS STOP did not stop collections calls to the same number, and a number on
do-not-contact still got email."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import consent, customers
from router.keys import Keys
from router.store import text
from tests.factories import world
from tests.workers.campaigns import Clock, create_campaign
from tests.workers.test_campaign_send_rules import AUDIENCE, DEPLOYMENT, JANE, Floor, definition, new_york

KEYS = Keys("acme")
JANE_EMAIL = "jane@example.com"
CHANNEL_SCOPE = DEPLOYMENT.replace('id = "acme"\n', 'id = "acme"\nopt_out_scope = "channel"\n', 1)


async def make_floor(clock: Clock, scope: str = "person") -> Floor:
    return Floor(await world(DEPLOYMENT if scope == "person" else CHANNEL_SCOPE), clock)


@pytest.fixture
def clock():
    with Clock(new_york(1, 12)) as clock:
        yield clock


async def launch(floor: Floor, channel: str, kind: str = "collections") -> None:
    await create_campaign(floor.w, definition(channel, kind), AUDIENCE)


async def test_the_default_scope_is_the_person(clock):
    floor = await make_floor(clock)
    assert floor.w.tenant.opt_out_scope == "person"


async def test_an_sms_stop_stops_collections_calls_to_the_same_number(clock):
    floor = await make_floor(clock)
    await floor.w.store.redis.sadd(KEYS.suppression("sms"), JANE)  # she texted STOP
    await launch(floor, "voice")
    assert await floor.worker.step() == 1
    assert await floor.w.outgoing() == []
    assert await floor.status() == "suppressed:opted_out"
    assert (await floor.progress()).counts["suppressed"] == 1


async def test_a_number_on_do_not_contact_gets_no_campaign_email(clock):
    floor = await make_floor(clock)
    await floor.w.store.redis.sadd(KEYS.do_not_contact, JANE)  # `campaign dnc add +12125550000`
    await launch(floor, "email", "cross_sell")
    assert await floor.worker.step() == 1
    assert await floor.w.outgoing() == []
    assert await floor.status() == "suppressed:do_not_contact"


async def test_a_pressed_9_stops_texts_to_the_number(clock):
    floor = await make_floor(clock)
    await floor.w.store.redis.sadd(KEYS.suppression("voice"), JANE)  # "to stop these calls, press 9"
    await launch(floor, "sms")
    await floor.worker.step()
    assert await floor.status() == "suppressed:opted_out"


async def test_an_email_unsubscribe_stops_texts_to_the_person_the_row_names(clock):
    floor = await make_floor(clock)
    await floor.w.store.redis.sadd(KEYS.suppression("email"), JANE_EMAIL)  # one-click unsubscribe
    await launch(floor, "sms")
    await floor.worker.step()
    assert await floor.status() == "suppressed:opted_out"


async def test_an_opt_out_of_an_address_linked_to_the_customer_covers_the_customer(clock):
    """Not in the campaign's row at all: a second number an agent linked to Jane."""
    floor = await make_floor(clock)
    await floor.w.arrive(channel="sms", address=JANE, body="hello")  # Jane is a customer
    customer = await customers.find(floor.w.store, "acme", customers.identity("sms", JANE))
    assert customer
    await customers.link(floor.w.store, "acme", customer, "phone:+12125550199")
    await floor.w.store.redis.sadd(KEYS.suppression("sms"), "+12125550199")
    audience = "phone,name,balance,account\n+12125550000,Jane,$120.00,A-1\n"
    await create_campaign(floor.w, definition("voice"), audience)
    await floor.worker.step()
    assert await floor.status() == "suppressed:opted_out"


async def test_a_call_queued_before_an_sms_stop_is_refused_as_it_is_to_be_dialled(clock):
    floor = await make_floor(clock)
    await launch(floor, "voice")
    assert await floor.worker.step() == 1
    await floor.w.store.redis.sadd(KEYS.suppression("sms"), JANE)
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "suppressed:refused_at_send:1:voice:opted_out"
    assert (await floor.progress()).refused_at_send == {"opted_out": 1}


async def test_an_email_queued_before_the_number_went_on_do_not_contact_is_refused_as_it_leaves(clock):
    floor = await make_floor(clock)
    await launch(floor, "email", "cross_sell")
    assert await floor.worker.step() == 1
    await floor.w.store.redis.sadd(KEYS.do_not_contact, JANE)
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "suppressed:refused_at_send:1:email:do_not_contact"


async def test_under_the_channel_scope_an_sms_stop_leaves_calls_alone(clock):
    floor = await make_floor(clock, "channel")
    await floor.w.store.redis.sadd(KEYS.suppression("sms"), JANE)
    await launch(floor, "voice")
    assert await floor.worker.step() == 1
    await floor.outbound.dispatch()
    assert await floor.sent() == ["cmp-dues-1-1"]


async def test_under_the_channel_scope_do_not_contact_of_a_number_leaves_email_alone(clock):
    floor = await make_floor(clock, "channel")
    await floor.w.store.redis.sadd(KEYS.do_not_contact, JANE)
    await launch(floor, "email", "cross_sell")
    await floor.worker.step()
    await floor.outbound.dispatch()
    assert await floor.sent() == ["cmp-dues-1-1"]


async def test_under_the_channel_scope_the_channels_own_opt_out_still_holds(clock):
    floor = await make_floor(clock, "channel")
    await floor.w.store.redis.sadd(KEYS.suppression("voice"), JANE)
    await launch(floor, "voice")
    await floor.worker.step()
    assert await floor.status() == "suppressed:opted_out"


# For random opt-outs on one channel, nothing leaves on another channel of the same person
# under "person": whichever list, whichever address of hers, before or after queueing.
OPT_OUTS = [
    ("suppress", "sms", JANE),
    ("suppress", "voice", JANE),
    ("suppress", "email", JANE_EMAIL),
    ("dnc", "", JANE),
    ("dnc", "", JANE_EMAIL),
    ("suppress", "sms", "+12125550199"),  # her second number, linked by an agent
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    opt_outs=st.lists(st.sampled_from(OPT_OUTS), min_size=1, max_size=3, unique=True),
    channel=st.sampled_from(["sms", "voice", "email"]),
    after_queueing=st.booleans(),
    known_customer=st.booleans(),
)
async def test_no_message_reaches_a_person_on_any_channel_after_an_opt_out_on_one(
    opt_outs, channel, after_queueing, known_customer
):
    with Clock(new_york(1, 12)) as clock:
        floor = await make_floor(clock)
        redis = floor.w.store.redis
        if known_customer:
            await floor.w.arrive(channel="sms", address=JANE, body="hello")
            customer = await customers.find(floor.w.store, "acme", customers.identity("sms", JANE))
            await customers.link(floor.w.store, "acme", customer, "phone:+12125550199")
        # an opt-out of a number nobody linked to her is somebody else's: not hers
        hers = [o for o in opt_outs if known_customer or o[2] != "+12125550199"]

        async def opt_out() -> None:
            for kind, list_channel, address in opt_outs:
                await (redis.sadd(KEYS.do_not_contact, address) if kind == "dnc" else
                       redis.sadd(KEYS.suppression(list_channel), address))  # fmt: skip

        if not after_queueing:
            await opt_out()
        await launch(floor, channel, "collections" if channel != "email" else "cross_sell")
        await floor.worker.step()
        if after_queueing:
            await opt_out()
        await floor.outbound.dispatch()
        status = text(await redis.hget(KEYS.campaign_status("dues"), "1"))
        if hers:
            assert await floor.sent() == [], (opt_outs, channel, status)
            assert "opted_out" in status or "do_not_contact" in status
        else:
            assert await floor.sent() == ["cmp-dues-1-1"]


async def test_on_a_real_redis_server_an_opt_out_of_a_linked_number_stops_email_to_the_customer(real_store):
    """The same rule in redis-server's own Lua (the embedded store runs another interpreter)."""
    w = await world(DEPLOYMENT, store=real_store)
    await w.arrive(channel="sms", address=JANE, body="hello")
    customer = await customers.find(w.store, "acme", customers.identity("sms", JANE))
    await customers.link(w.store, "acme", customer, "phone:+12125550199")
    await w.store.redis.sadd(KEYS.suppression("voice"), "+12125550199")  # she pressed 9 on a call to it
    assert await consent.refusal(w.store, w.tenant, "email", JANE_EMAIL, other=f"phone:{JANE}") == "opted_out"
    assert await consent.customer_refusal(w.store, w.tenant, customer, "sms") == "opted_out"
    any_hour = 'start = "00:00", end = "24:00"'  # redis-server keeps its own clock
    offer = definition("email", "cross_sell").replace('start = "08:00", end = "21:00"', any_hour)
    await create_campaign(w, offer, AUDIENCE)
    floor = Floor(w, None)
    assert await floor.worker.step() == 1
    assert await w.outgoing() == []
    assert await floor.status() == "suppressed:opted_out"
