"""The SMS satisfaction survey end to end in the sandbox: texts arrive through Twilio's
signed webhook, the survey leaves through the dispatcher (to the sandbox outbox of a
tenant without a Twilio account), and the customer's reply "1".."5" is the rating; any
other reply is a new contact, and a customer who texted STOP is never asked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

import channels
from channels.sandbox import outbox
from router import agents, bus, conversations, events
from router.app.web import application
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.channels.test_sms_inbound import GLOBEX_NUMBER, SANDBOX_TOKEN, Twilio, replies
from tests.factories import read_inbound, route_entries, world
from workers.dispatch import Dispatcher

CUSTOMER = "+15551230000"
TENANTS = f"""
[[tenants]]
id = "globex"
name = "Globex"
entry = {{ default = "sales" }}
sms = {{ numbers = ["{GLOBEX_NUMBER}"] }}
survey = {{ channels = ["sms"], delay_seconds = 120 }}

[[tenants.queues]]
id = "sales"

[[tenants.agents]]
id = "gus"
name = "Gus Fring"
"""


@pytest.fixture
async def twilio() -> AsyncIterator[Twilio]:
    w = await world(TENANTS)
    settings = Settings(twilio_sandbox_token=SANDBOX_TOKEN)
    async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
        yield Twilio(client, w)


async def text(twilio: Twilio, body: str) -> None:
    """The customer texts the tenant; a routing worker takes it."""
    assert await replies(await twilio.text(body, to=GLOBEX_NUMBER)) == []
    entries = await read_inbound(twilio.world.store, "globex")
    assert await route_entries(twilio.world.store, twilio.world.deployment, entries) == set(entries)


async def dispatch(twilio: Twilio) -> None:
    """A dispatcher sends what is queued (the sandbox keeps it in the outbox)."""
    w = twilio.world
    senders = channels.senders(w.store, w.deployment, Settings())
    consumer = bus.Consumer(
        w.store, DISPATCH_GROUP, "d1", [Keys("globex").outbound], channels_dispatcher(w, senders), block_ms=1
    )
    await consumer.ensure_groups()
    await consumer.read()


def channels_dispatcher(w, senders):
    return Dispatcher(w.store, senders).handle


async def surveys_kept(w) -> list[events.OutboundMessage]:
    """The surveys the sandbox kept in the tenant's outbox instead of sending them."""
    return [message for _id, _provider, message in await outbox(w.store, "globex") if message.metadata.get("survey")]


async def handled_and_closed(twilio: Twilio) -> str:
    w = twilio.world
    await w.available("gus")
    await text(twilio, "My bill is wrong")
    conversation = await w.accept_offer("gus")
    await agents.reply(w.store, w.tenant, "gus", conversation, "Corrected, sorry!")
    await agents.close(w.store, w.tenant, "gus", conversation, "resolved")
    return conversation


async def test_the_survey_goes_after_the_delay_and_a_texted_digit_is_the_rating(twilio):
    w = twilio.world
    conversation = await handled_and_closed(twilio)
    [due] = (await w.timers("survey:")).values()
    [closed] = await w.events(events.Closed)
    assert due - closed.occurred_at == pytest.approx(120_000, abs=2000)
    await w.fire("survey:")
    await dispatch(twilio)
    [survey] = await surveys_kept(w)
    assert (survey.to, survey.channel) == (CUSTOMER, "sms")
    assert survey.body.startswith("Thanks for contacting Globex.")
    await text(twilio, "4")
    record = await w.conversation(conversation)
    assert (record["survey"], record["survey_rating"]) == ("rated", "4")
    assert len(await w.events(events.Queued)) == 1  # the rating opened no conversation
    bodies = [entry.body for entry in await _history(w, conversation)]
    assert bodies[-2:] == [survey.body, "4"]  # the question and the answer, in the conversation's history


async def test_a_reply_that_is_not_a_rating_is_a_new_contact_and_nothing_is_lost(twilio):
    w = twilio.world
    conversation = await handled_and_closed(twilio)
    await w.fire("survey:")
    await text(twilio, "4 more bills are wrong")
    [_first, second] = await w.events(events.Queued)
    assert second.conversation != conversation
    assert "survey_rating" not in await w.conversation(conversation)
    assert [e.body for e in await _history(w, second.conversation)] == ["4 more bills are wrong"]


async def test_a_customer_who_texted_stop_is_never_surveyed(twilio):
    w = twilio.world
    conversation = await handled_and_closed(twilio)
    assert await replies(await twilio.text("STOP", to=GLOBEX_NUMBER))  # the carrier-style confirmation
    await w.fire("survey:")
    await dispatch(twilio)
    assert await surveys_kept(w) == []
    assert (await w.conversation(conversation))["survey"] == "opted_out"


async def test_the_survey_is_sent_once_whatever_runs_twice(twilio):
    w = twilio.world
    conversation = await handled_and_closed(twilio)
    await w.fire("survey:")
    await w.store.redis.zadd(w.keys.timers, {f"survey:{conversation}": 0})  # a second worker's claim
    await w.fire("survey:")
    await dispatch(twilio)
    await dispatch(twilio)
    assert len(await surveys_kept(w)) == 1


async def _history(w, conversation: str) -> list[events.HistoryEntry]:
    return await conversations.history(w.store, "globex", conversation)
