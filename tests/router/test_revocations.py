"""Consent revoked in free text: routing flags it, an agent confirms it (the opt-out is
recorded, with who and when in the audit trail) or dismisses it (nothing is), and no
campaign reaches the person meanwhile (router/revocations.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router import audit, customers, events, revocations
from router.customers import identity
from router.keys import Keys
from router.store import text
from tests.factories import world
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture
from tests.workers.campaigns import Clock, create_campaign
from tests.workers.test_campaign_send_rules import AUDIENCE, DEPLOYMENT, JANE, Floor, definition, new_york

KEYS = Keys("acme")


@pytest.mark.parametrize(
    ("body", "phrase", "channels"),
    [
        ("please stop texting me", "stop texting me", ("sms",)),
        ("Don't call me again!", "Don't call me", ("voice",)),
        ("unsubscribe", "unsubscribe", ()),
        ("Remove me from your list please", "Remove me from your list", ()),
        ("take me off the mailing list", "take me off the mailing list", ("email",)),
        ("Please do not email me anymore", "do not email me", ("email",)),
        ("no more calls, I paid", "no more calls", ("voice",)),
        ("不要再打电话", "不要再打电话", ("voice",)),
        ("请不要再给我打电话了", "不要再给我打电话", ("voice",)),
        ("退订", "退订", ()),
        ("别再发短信了", "别再发短信", ("sms",)),
    ],
)
def test_common_revocations_are_recognised_with_the_channels_they_name(body, phrase, channels):
    assert revocations.detect(body) == (phrase, channels)


@pytest.mark.parametrize(
    "body",
    [
        "Christopher here, can you stop by?",
        "I will pay on Friday",
        "can you text me the code",
        "non-stop",
        "好的 谢谢",
    ],
)
def test_ordinary_messages_raise_no_flag(body):
    assert revocations.detect(body) is None


def test_a_reply_quoting_a_campaign_emails_unsubscribe_line_raises_no_flag():
    reply = (
        "Thanks, I will pay on Friday.\n\nOn Tue, 1 Jun 2027 at 12:00, Acme <dues@acme.test> wrote:\n"
        "> Your balance is due.\n> To unsubscribe, click here."
    )
    assert revocations.detect(reply) is None
    assert revocations.detect("Thanks\n> unsubscribe\n") is None
    assert revocations.detect("Please unsubscribe me.\n\nOn Tue, 1 Jun 2027, Acme wrote:\n> hi") == ("unsubscribe", ())


async def flagged(floor: Floor, body: str = "please stop texting me") -> str:
    """Jane writes `body`; returns her conversation."""
    return await floor.w.arrive(channel="sms", address=JANE, body=body)


@pytest.fixture
async def floor() -> AsyncIterator[Floor]:
    with Clock(new_york(1, 12)) as clock:
        yield Floor(await world(DEPLOYMENT), clock)


async def test_routing_flags_the_message_and_keeps_the_first_one(floor):
    await flagged(floor)
    await flagged(floor, "and don't call me either")
    [flag] = await revocations.pending(floor.w.store, "acme", [identity("sms", JANE)])
    assert (flag.phrase, flag.channel, flag.address, flag.channels) == ("stop texting me", "sms", JANE, ("sms",))


async def test_an_ordinary_message_raises_no_flag(floor):
    await flagged(floor, "I can pay on Friday")
    assert await floor.w.store.redis.hlen(KEYS.revocations) == 0


async def test_while_a_flag_waits_a_recipient_is_not_sent_to_and_goes_once_it_is_dismissed(floor):
    await flagged(floor)
    await create_campaign(floor.w, definition("voice"), AUDIENCE)  # a call, not a text: the flag holds every channel
    assert await floor.worker.step() == 1
    assert await floor.w.outgoing() == []
    assert await floor.w.store.redis.hget(KEYS.campaign_status("dues"), "1") is None  # not suppressed: waiting
    [(_seq, due)] = await floor.due()
    assert due == int((new_york(1, 12).timestamp() + 15 * 60) * 1000)
    assert await revocations.dismiss(floor.w.store, "acme", identity("sms", JANE), actor="amy", client="test")
    floor.clock.forward(15 * 60)
    assert await floor.worker.step() == 1
    await floor.outbound.dispatch()
    assert await floor.sent() == ["cmp-dues-1-1"]
    assert await floor.w.store.redis.smembers(KEYS.suppression("sms")) == set()
    entries, _ = await audit.read(floor.w.store, tenant="acme", action="revocation_dismissed")
    assert [e.actor for _id, e in entries] == ["amy"]


async def test_a_message_queued_before_the_flag_is_held_then_refused_once_confirmed(floor):
    await floor.queue()
    await flagged(floor)
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "held:1:sms:revocation_pending"
    opted = await revocations.confirm(
        floor.w.store, "acme", identity("sms", JANE), actor="sue", client="10.0.0.1", conversation="cmp-dues-1"
    )
    assert opted == [("sms", JANE)]
    assert await floor.worker.step() == 1
    assert await floor.status() == "suppressed:opted_out"
    assert await floor.sent() == []


async def test_confirming_records_the_opt_out_who_and_when(floor):
    conversation = await flagged(floor, "Don't call me again")
    opted = await revocations.confirm(
        floor.w.store, "acme", identity("sms", JANE), actor="amy", client="10.0.0.1", conversation=conversation
    )
    assert opted == [("voice", JANE)]  # the words named calls
    assert await floor.w.store.redis.sismember(KEYS.suppression("voice"), JANE)
    assert await floor.w.store.redis.hlen(KEYS.revocations) == 0
    [event] = await floor.w.events(events.OptedOut)
    assert (event.channel, event.address, event.keyword, event.conversation) == (
        "voice",
        JANE,
        "confirmed by amy",
        conversation,
    )
    entries, _ = await audit.read(floor.w.store, tenant="acme", action="consent_revoked")
    [(_id, entry)] = entries
    assert (entry.actor, entry.client, entry.target) == ("amy", "10.0.0.1", f"conversation {conversation}")
    assert entry.detail == "free-text revocation confirmed: opted out of voice"
    assert entry.at > 0
    # settled once: a second agent's confirmation finds nothing
    assert await revocations.confirm(floor.w.store, "acme", identity("sms", JANE), actor="zoe", client="") is None


async def test_a_confirmation_covers_every_address_of_the_person_that_reaches_the_named_channel(floor):
    await flagged(floor, "please stop emailing me")
    customer = await customers.find(floor.w.store, "acme", identity("sms", JANE))
    await customers.link(floor.w.store, "acme", customer, identity("email", "jane@example.com"))
    opted = await revocations.confirm(floor.w.store, "acme", identity("sms", JANE), actor="amy", client="")
    assert opted == [("email", "jane@example.com")]


# the desk

DESK = """
[[tenants]]
id = "acme"
entry = { default = "support" }

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"

[[tenants.agents]]
id = "zoe"

[[tenants]]
id = "globex"

[[tenants.queues]]
id = "sales"

[[tenants.agents]]
id = "gus"
"""


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox(DESK)
    async with server:
        yield Inbox(w, server)


async def test_the_agent_sees_the_flag_on_the_conversation_and_confirms_it(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", address=JANE, body="<b>please</b> stop texting me")
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Possible opt-out: please confirm" in page
        assert "<q>stop texting me</q> (SMS, " in page
        assert f'name="ident" value="phone:{JANE}"' in page
        stranger = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"csrf": csrf, "ident": "phone:+15550009999", "decision": "confirm"},
            allow_redirects=False,
        )
        assert stranger.status == 409 and "not this customer" in await stranger.text()
        forged = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"ident": f"phone:{JANE}", "decision": "confirm"},
            allow_redirects=False,
        )
        assert forged.status in (400, 403)  # no CSRF token
        done = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"csrf": csrf, "ident": f"phone:{JANE}", "decision": "confirm"},
            allow_redirects=False,
        )
        assert done.status == 303 and done.headers["Location"].endswith("?done=revocation_confirmed")
        page = await (await client.get(done.headers["Location"])).text()
        assert "Opt-out recorded" in page and "Possible opt-out" not in page
    assert await w.store.redis.sismember(KEYS.suppression("sms"), JANE)
    entries, _ = await audit.read(w.store, tenant="acme", action="consent_revoked")
    assert [(e.actor, e.target) for _id, e in entries] == [("amy", f"conversation {conversation}")]


async def test_dismissing_records_no_opt_out(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", address=JANE, body="unsubscribe")
    client, csrf = await logged_in(inbox, "amy")
    async with client:
        done = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"csrf": csrf, "ident": f"phone:{JANE}", "decision": "dismiss"},
            allow_redirects=False,
        )
        assert done.headers["Location"].endswith("?done=revocation_dismissed")
        again = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"csrf": csrf, "ident": f"phone:{JANE}", "decision": "confirm"},
            allow_redirects=False,
        )
        assert again.headers["Location"].endswith("?done=revocation_gone")
    assert await w.store.redis.smembers(KEYS.suppression("sms")) == set()
    assert [text(k) for k in await w.store.redis.hkeys(KEYS.revocations)] == []


async def test_an_agent_of_another_tenant_cannot_reach_the_flag(inbox: Inbox) -> None:
    w = inbox.world
    conversation = await w.assigned_to("amy", address=JANE, body="unsubscribe")
    client, csrf = await logged_in(inbox, "gus")
    async with client:
        response = await client.post(
            f"/inbox/t/acme/c/{conversation}/revocation",
            data={"csrf": csrf, "ident": f"phone:{JANE}", "decision": "dismiss"},
            allow_redirects=False,
        )
        assert response.status == 404
    assert await w.store.redis.hlen(KEYS.revocations) == 1
