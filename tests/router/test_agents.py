"""What an agent does with a conversation: accept, reject, reply, note, transfer, close."""

import pytest

from router import agents, conversations, customers, events
from router.agents import AgentError
from tests.factories import PROMISE, history_bodies, world

CENTRE = """
[[tenants]]
id = "acme"
entry = { default = "support" }
dispositions = ["resolved", "promise_to_pay"]

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }

[[tenants.agents]]
id = "zoe"
skills = { support = 1 }

[[tenants.agents]]
id = "bill"
skills = { billing = 1 }
"""


async def assigned_to_amy(w, **contact) -> str:
    """A customer's conversation, accepted by amy (the only agent available)."""
    await w.available("amy")
    conversation = await w.arrive(**contact)
    assert await w.accept_offer("amy") == conversation
    return conversation


async def outbound_messages(w) -> list[events.OutboundMessage]:
    return [events.decode_outbound(fields[b"e"]) for _id, fields in await w.store.redis.xrange(w.keys.outbound)]


# --- accept and reject ---


async def test_an_agent_sees_their_offers_and_accepts_one():
    w = await world(CENTRE)
    await w.available("amy")
    conversation = await w.arrive(body="my router is down")
    [offer] = await agents.offers(w.store, w.tenant, "amy")
    assert (offer["conv"], offer["state"], offer["channel"]) == (conversation, "pending", "sms")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    assert await agents.offers(w.store, w.tenant, "amy") == []
    [work] = await agents.work(w.store, w.tenant, "amy")
    assert (work["id"], work["state"]) == (conversation, "assigned")


async def test_a_rejected_offer_leaves_the_agents_work():
    w = await world(CENTRE)
    await w.available("amy")
    await w.arrive()
    [offer] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert await agents.work(w.store, w.tenant, "amy") == []


async def test_an_unknown_reservation_is_refused():
    w = await world(CENTRE)
    for reservation in ("nope.1", "nope", ""):
        with pytest.raises(AgentError, match="unknown"):
            await agents.accept(w.store, w.tenant, "amy", reservation)


async def test_a_late_answer_to_an_offer_is_told_how_the_offer_ended():
    w = await world(CENTRE)
    await w.available("amy")
    conversation = await w.arrive()
    [rejected] = await w.offers("amy")
    await agents.reject(w.store, w.tenant, "amy", rejected["reservation"])
    with pytest.raises(AgentError, match="is rejected"):
        await agents.accept(w.store, w.tenant, "amy", rejected["reservation"])
    with pytest.raises(AgentError, match="is not yours"):
        await agents.accept(w.store, w.tenant, "zoe", rejected["reservation"])

    await w.available("zoe")  # offered again, to zoe; the customer hangs up before she answers
    [cancelled] = await w.offers("zoe")
    assert cancelled["conv"] == conversation and cancelled["reservation"] != rejected["reservation"]
    assert await conversations.close_unanswered(w.store, "acme", conversation, "abandoned")
    with pytest.raises(AgentError, match="is cancelled"):
        await agents.accept(w.store, w.tenant, "zoe", cancelled["reservation"])


async def test_an_offer_made_before_offers_lived_on_their_conversation_is_answered_as_before():
    # Until 2026-12 a pending offer had a hash of its own, state "pending": one made then
    # and still pending when the routers are upgraded is accepted like any other.
    w = await world(CENTRE)
    await w.available("amy")
    conversation = await w.arrive()
    [offer] = await w.offers("amy")
    key = f"{w.keys.base}:res:{offer['reservation']}"
    await w.store.redis.hset(key, mapping={"agent": "amy", "state": "pending", "expires_at": offer["expires_at"]})
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    assert (await w.conversation(conversation))["state"] == "assigned"
    assert (await w.store.redis.hget(key, "state")) == b"accepted"


# --- reply ---


async def test_a_reply_leaves_through_the_channel_the_customer_wrote_on():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, channel="telegram", address="424242", body="hi")
    message = await agents.reply(w.store, w.tenant, "amy", conversation, "Hello, how can I help?")
    [queued] = await outbound_messages(w)
    assert queued == message
    assert (queued.channel, queued.to, queued.agent, queued.conversation) == ("telegram", "424242", "amy", conversation)
    history = await conversations.history(w.store, "acme", conversation)
    assert history_bodies(history) == [("in", "hi"), ("out", "Hello, how can I help?")]
    record = await w.conversation(conversation)
    assert record["first_response_at"] == str(message.occurred_at)
    [added] = [e for e in await w.events(events.MessageAdded) if e.direction == "out"]
    assert (added.message, added.agent) == (message.id, "amy")


async def test_the_first_response_time_is_kept_after_more_replies():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    first = await agents.reply(w.store, w.tenant, "amy", conversation, "one")
    await agents.reply(w.store, w.tenant, "amy", conversation, "two")
    assert (await w.conversation(conversation))["first_response_at"] == str(first.occurred_at)


async def test_a_reply_follows_the_customer_to_their_latest_channel():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, channel="sms", address="+15551230000")
    customer = (await w.conversation(conversation))["customer"]
    await customers.link(w.store, "acme", customer, "email:jane@example.com")
    await w.arrive(channel="email", address="jane@example.com", body="sending the photo by email")
    message = await agents.reply(w.store, w.tenant, "amy", conversation, "Got it")
    assert (message.channel, message.to) == ("email", "jane@example.com")


async def test_an_agent_may_reply_to_another_address_of_the_same_customer():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, channel="sms", address="+15551230000")
    customer = (await w.conversation(conversation))["customer"]
    await customers.link(w.store, "acme", customer, "email:jane@example.com")
    message = await agents.reply(
        w.store, w.tenant, "amy", conversation, "Your invoice", channel="email", address="jane@example.com"
    )
    assert (message.channel, message.to) == ("email", "jane@example.com")


async def cc_d_colleague_replies(w) -> str:
    """Jane writes by email, copying Bob; amy holds it; Bob answers into the thread."""
    conversation = await assigned_to_amy(
        w,
        channel="email",
        address="jane@example.com",
        provider_id="<m1@example.com>",
        metadata={"cc": "bob@corp.example"},
    )
    joined = await w.arrive(
        channel="email", address="bob@corp.example", provider_id="<m2@corp.example>", thread=("<m1@example.com>",)
    )
    assert joined == conversation  # he is part of the conversation
    return conversation


async def test_someone_else_replying_into_an_email_thread_does_not_take_its_replies():
    w = await world(CENTRE)
    conversation = await cc_d_colleague_replies(w)
    record = await w.conversation(conversation)
    customer = record["customer"]
    assert (record["last_channel"], record["last_address"]) == ("email", "jane@example.com")
    message = await agents.reply(w.store, w.tenant, "amy", conversation, "Your balance is 1,204.")
    assert (message.channel, message.to, message.cc) == ("email", "jane@example.com", ())
    assert (await w.conversation(conversation))["customer"] == customer
    assert await conversations.participants(w.store, "acme", record) == [("email", "bob@corp.example")]


async def test_an_agent_answers_someone_else_in_the_thread_only_by_choosing_them():
    w = await world(CENTRE)
    conversation = await cc_d_colleague_replies(w)
    message = await agents.reply(
        w.store, w.tenant, "amy", conversation, "Bob: noted", channel="email", address="bob@corp.example"
    )
    assert message.to == "bob@corp.example"
    # a conversation from before intake told them apart, its last address Bob's: never the default
    await w.store.redis.hset(w.keys.conversation(conversation), "last_address", "bob@corp.example")
    with pytest.raises(ValueError, match=r"bob@corp\.example is not an address of this conversation's customer"):
        await agents.reply(w.store, w.tenant, "amy", conversation, "Your balance")


async def test_an_email_reply_copies_others_in_the_conversation_only_when_asked():
    w = await world(CENTRE)
    conversation = await cc_d_colleague_replies(w)
    message = await agents.reply(w.store, w.tenant, "amy", conversation, "To you both", cc=("Bob@Corp.example",))
    assert (message.to, message.cc) == ("jane@example.com", ("bob@corp.example",))
    [*_, entry] = await conversations.history(w.store, "acme", conversation)
    assert entry.metadata["cc"] == "bob@corp.example"  # the history says whom it was copied to
    with pytest.raises(ValueError, match="only its participants may be copied"):
        await agents.reply(w.store, w.tenant, "amy", conversation, "hi", cc=("stranger@example.com",))
    sms = await assigned_to_amy(w, channel="sms", address="+15551230000")
    with pytest.raises(ValueError, match="only an email"):
        await agents.reply(w.store, w.tenant, "amy", sms, "hi", cc=("bob@corp.example",))
    assert len(await outbound_messages(w)) == 1


async def test_a_reply_to_someone_elses_address_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, channel="sms", address="+15551230000")
    with pytest.raises(ValueError, match="not an address of this conversation's customer"):
        await agents.reply(w.store, w.tenant, "amy", conversation, "hi", channel="sms", address="+15559870000")
    assert await outbound_messages(w) == []


async def test_a_reply_on_another_channel_needs_an_address():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, channel="sms")
    with pytest.raises(ValueError, match="no email address"):
        await agents.reply(w.store, w.tenant, "amy", conversation, "hi", channel="email")


async def test_only_the_assigned_agent_may_reply():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="not assigned to zoe"):
        await agents.reply(w.store, w.tenant, "zoe", conversation, "hi")
    assert await outbound_messages(w) == []


async def test_an_offer_must_be_accepted_before_replying():
    w = await world(CENTRE)
    await w.available("amy")
    conversation = await w.arrive()
    with pytest.raises(AgentError, match="not assigned"):
        await agents.reply(w.store, w.tenant, "amy", conversation, "hi")


async def test_a_customers_follow_up_joins_the_conversation_of_the_agent_serving_them():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, body="my bill is wrong")
    await w.available("zoe")
    assert await w.arrive(body="here is the invoice number") == conversation
    assert await w.offered("zoe") == []
    [_, follow_up] = [e for e in await w.events(events.MessageAdded) if e.direction == "in"]
    assert follow_up.agent == "amy"
    history = await conversations.history(w.store, "acme", conversation)
    assert history_bodies(history) == [("in", "my bill is wrong"), ("in", "here is the invoice number")]


# --- notes ---


async def test_a_note_is_kept_in_the_history_and_never_sent():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, body="hi")
    await agents.note(w.store, w.tenant, "amy", conversation, "customer sounds upset")
    history = await conversations.history(w.store, "acme", conversation)
    assert history_bodies(history) == [("in", "hi"), ("note", "customer sounds upset")]
    assert history[-1].agent == "amy"
    assert await outbound_messages(w) == []


async def test_only_the_assigned_agent_may_add_a_note():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError):
        await agents.note(w.store, w.tenant, "zoe", conversation, "sneaky")


# --- transfer ---


async def test_a_transfer_to_a_colleague_offers_them_the_conversation_with_its_history():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, body="I want to cancel")
    await agents.reply(w.store, w.tenant, "amy", conversation, "Let me get a colleague")
    await w.available("zoe")
    outcome = await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe", note="retention offer")
    assert outcome == "offered"
    assert await w.offered("zoe") == [conversation]
    assert (await w.agent("amy"))["load:total"] == "0"
    await w.accept_offer("zoe")
    assert (await w.conversation(conversation))["agent"] == "zoe"
    history = await conversations.history(w.store, "acme", conversation)
    assert history_bodies(history) == [
        ("in", "I want to cancel"),
        ("out", "Let me get a colleague"),
        ("note", "Transfer note: retention offer"),
    ]
    [transferred] = await w.events(events.Transferred)
    assert (transferred.agent, transferred.to_agent, transferred.note) == ("amy", "zoe", "retention offer")


async def test_a_transfer_to_a_colleague_who_is_not_available_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="agent unavailable"):
        await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe")
    record = await w.conversation(conversation)
    assert (record["state"], record["agent"]) == ("assigned", "amy")
    assert (await w.agent("amy"))["load:total"] == "1"


async def test_a_transfer_to_an_unknown_agent_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="unknown agent"):
        await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="nobody")


async def test_a_transfer_the_colleague_rejects_goes_back_to_the_queue():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await w.available("zoe")
    await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe")
    await agents.set_presence(w.store, w.tenant, "amy", "away")
    [offer] = await w.offers("zoe")
    await agents.reject(w.store, w.tenant, "zoe", offer["reservation"])
    assert await w.waiting("support") == [conversation]
    assert (await w.conversation(conversation))["state"] == "queued"


async def test_a_transfer_to_a_queue_waits_there_with_its_original_age():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w, ago=300)
    enqueued_at = (await w.conversation(conversation))["enqueued_at"]
    newer = await w.arrive(queue="billing", address="+15559870000")
    outcome = await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing")
    assert outcome == "queued"
    record = await w.conversation(conversation)
    assert (record["state"], record["queue"], record["enqueued_at"]) == ("queued", "billing", enqueued_at)
    assert await w.waiting("billing") == [conversation, newer]
    assert (await w.agent("amy"))["load:total"] == "0"
    await w.available("bill")
    assert conversation in await w.offered("bill")


async def test_a_transfer_to_a_queue_is_not_offered_straight_back_to_the_agent_who_sent_it():
    # amy serves billing too, and once she lets go she is idle while bill is busy with a customer.
    w = await world(
        CENTRE.replace('id = "amy"\nskills = { support = 1 }', 'id = "amy"\nskills = { support = 1, billing = 1 }')
    )
    conversation = await assigned_to_amy(w)
    await w.available("bill")
    other = await w.arrive(queue="billing", address="+15559870000")
    assert await w.offered("bill") == [other]
    await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing")
    assert await w.offered("amy") == []
    assert conversation in await w.offered("bill")


async def test_a_transfer_to_a_queue_only_its_sender_serves_comes_back_to_them_after_the_decline_window():
    w = await world(
        CENTRE.replace('id = "amy"\nskills = { support = 1 }', 'id = "amy"\nskills = { support = 1, billing = 1 }')
    )
    conversation = await assigned_to_amy(w)
    await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing")
    assert await w.offered("amy") == []  # nobody else serves billing right now
    await w.store.redis.zadd(w.keys.conversation_declined(conversation), {"amy": 0})  # the window passed
    await w.fire("route:")
    assert await w.offered("amy") == [conversation]


async def test_a_transfer_to_an_unknown_queue_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="unknown queue"):
        await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="nowhere")
    assert (await w.conversation(conversation))["agent"] == "amy"


@pytest.mark.parametrize("target", [{}, {"to_agent": "zoe", "to_queue": "billing"}])
async def test_a_transfer_names_exactly_one_agent_or_queue(target):
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="exactly one"):
        await agents.transfer(w.store, w.tenant, "amy", conversation, **target)


async def test_only_the_assigned_agent_may_transfer():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await w.available("zoe")
    with pytest.raises(AgentError):
        await agents.transfer(w.store, w.tenant, "zoe", conversation, to_queue="billing")


# --- close ---


async def test_closing_with_a_disposition_ends_the_conversation_and_frees_the_agent():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    record = await w.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "promise_to_pay")
    assert (await w.agent("amy"))["load:total"] == "0"
    assert await agents.work(w.store, w.tenant, "amy") == []
    [closed] = await w.events(events.Closed)
    assert (closed.agent, closed.disposition, closed.conversation) == ("amy", "promise_to_pay", conversation)
    assert [e.conversation for e in await w.events(events.WrappedUp)] == [conversation]


async def test_a_disposition_outside_the_tenants_list_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="disposition must be one of resolved, promise_to_pay"):
        await agents.close(w.store, w.tenant, "amy", conversation, "no_answer")
    assert (await w.conversation(conversation))["state"] == "assigned"


async def test_only_the_assigned_agent_may_close():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError):
        await agents.close(w.store, w.tenant, "zoe", conversation, "resolved")
    assert (await w.conversation(conversation))["state"] == "assigned"


async def test_a_closed_conversation_cannot_be_closed_or_answered_again():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    with pytest.raises(AgentError):
        await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    with pytest.raises(AgentError):
        await agents.reply(w.store, w.tenant, "amy", conversation, "one more thing")
    assert len(await w.events(events.Closed)) == 1


async def test_closing_gives_the_freed_slot_to_the_next_waiting_contact():
    w = await world(
        CENTRE.replace(
            'id = "amy"\nskills = { support = 1 }', 'id = "amy"\nskills = { support = 1 }\ncapacity = { sms = 1 }'
        )
    )
    conversation = await assigned_to_amy(w, address="+15550000001")
    waiting = await w.arrive(address="+15550000002")
    assert await w.waiting("support") == [waiting]
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    assert await w.offered("amy") == [waiting]


async def test_agent_going_away_hands_back_pending_offers_at_once() -> None:
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    assert await w.offered("amy") == [conversation]
    await w.available("zoe")
    await agents.set_presence(w.store, w.tenant, "amy", "away", "lunch")
    assert await w.offered("amy") == []
    assert await w.offered("zoe") == [conversation]


async def test_a_failed_transfer_leaves_no_transfer_note() -> None:
    w = await world()
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match="agent unavailable"):
        await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe", note="over to you")
    history = await conversations.history(w.store, "acme", conversation)
    assert [e for e in history if e.kind == "note"] == []


async def test_a_retried_reply_with_the_same_key_is_sent_once() -> None:
    w = await world()
    conversation = await assigned_to_amy(w)
    first = await agents.reply(w.store, w.tenant, "amy", conversation, "On it", idempotency_key="form-1")
    again = await agents.reply(w.store, w.tenant, "amy", conversation, "On it", idempotency_key="form-1")
    assert again == first
    assert [m.body for m in await outbound_messages(w)] == ["On it"]
    other = await agents.reply(w.store, w.tenant, "amy", conversation, "On it", idempotency_key="form-2")
    assert other.id != first.id


async def test_a_reply_leaves_from_the_number_the_customer_wrote_to() -> None:
    w = await world()
    conversation = await assigned_to_amy(w, to="+15550100009")
    reply = await agents.reply(w.store, w.tenant, "amy", conversation, "Hello")
    assert reply.sender == "+15550100009"


async def test_a_caller_who_hangs_up_while_offered_frees_the_agent_at_once() -> None:
    w = await world()
    await w.available("amy")
    call = await w.arrive(channel="voice", address="+15550000001", kind="call")
    assert await w.offered("amy") == [call]
    assert (await w.conversation(call))["kind"] == "call"
    assert await conversations.close_unanswered(w.store, "acme", call, "abandoned")
    record = await w.conversation(call)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    assert (await w.agent("amy"))["load:total"] == "0"
    assert not await conversations.close_unanswered(w.store, "acme", call, "abandoned")


async def test_closing_an_unanswered_call_leaves_one_an_agent_has_just_accepted() -> None:
    w = await world()
    await w.available("amy")
    call = await w.arrive(channel="voice", address="+15550000001", kind="call")
    await w.accept_offer("amy")  # the accept wins the race with the caller's hang-up
    assert not await conversations.close_unanswered(w.store, "acme", call, "abandoned")
    assert (await w.conversation(call))["state"] == "assigned"


@pytest.mark.parametrize(
    ("amount", "due", "problem"),
    [
        ("", "2099-01-31", "needs the amount"),
        ("-5", "2099-01-31", "above 0"),
        ("1.005", "2099-01-31", "at most two decimals"),
        ("120", "", "needs the date"),
        ("120", "2000-01-01", "cannot be due in the past"),
    ],
)
async def test_a_promise_to_pay_needs_an_amount_and_a_date_to_come(amount, due, problem):
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.raises(AgentError, match=problem):
        await agents.close(
            w.store, w.tenant, "amy", conversation, "promise_to_pay", promise_amount=amount, promise_date=due
        )
    assert (await conversations.get(w.store, "acme", conversation))["state"] == "assigned"


async def test_a_promise_to_pay_keeps_its_terms_on_the_conversation():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    terms = {"promise_amount": "1,200.5", "promise_date": "2099-01-31"}
    await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **terms)
    record = await conversations.get(w.store, "acme", conversation)
    assert (record["promise_amount"], record["promise_date"]) == ("1200.50", "2099-01-31")
