"""Customers: one identity and one history across channels."""

import pytest

from router import agents, conversations, customers
from router.customers import InvalidAddress, identity, normalise
from tests.factories import contact, world


@pytest.mark.parametrize(
    ("channel", "address", "expected"),
    [
        ("sms", "+1 (555) 123-0000", "+15551230000"),
        ("voice", "555-123-0000", "+15551230000"),  # national format, default region US
        ("fax", "+44 20 7946 0000", "+442079460000"),
        ("email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("telegram", "123456789", "123456789"),
        ("webchat", "visitor-abc", "visitor-abc"),
    ],
)
def test_addresses_are_normalised_per_channel(channel, address, expected):
    assert normalise(channel, address) == expected


@pytest.mark.parametrize(
    ("channel", "address"),
    [
        ("sms", "call me maybe"),
        ("voice", "+1 555"),
        ("email", "no-at-sign"),
        ("email", "@example.com"),
        ("telegram", " "),
    ],
)
def test_an_address_that_cannot_identify_anyone_is_refused(channel, address):
    with pytest.raises(InvalidAddress):
        normalise(channel, address)


def test_phone_channels_share_one_identity():
    assert identity("sms", "+15551230000") == identity("voice", "+15551230000") == "phone:+15551230000"
    assert identity("email", "a@b.c") == "email:a@b.c"


async def test_a_text_and_a_call_from_one_number_are_one_customer_in_one_conversation():
    w = await world()
    texted = await w.arrive(channel="sms", address="+1 555 123 0000", body="my bill")
    called = await w.arrive(channel="voice", address="(555) 123-0000", kind="call")
    assert called == texted
    history = await conversations.history(w.store, "acme", texted)
    assert [(h.channel, h.contact_kind) for h in history] == [("sms", "message"), ("voice", "call")]
    record = await w.conversation(texted)
    assert record["last_channel"] == "voice"  # a reply goes where the customer last wrote


async def test_where_the_customer_last_wrote_is_their_first_message_until_they_write_again():
    w = await world()
    opened = await w.arrive(channel="sms", address="+15551230000", to="+15557770000")
    stored = {k.decode() for k in await w.store.redis.hkeys(w.keys.conversation(opened))}
    # left out of a new conversation's hash (it goes without saying), but not its tenant address
    assert not stored & {"last_channel", "last_address", "last_message_at"}
    assert "tenant_address" in stored
    record = await conversations.get(w.store, "acme", opened)
    assert (record["last_channel"], record["last_address"]) == ("sms", "+15551230000")
    assert record["last_message_at"] == record["created_at"]
    assert record["tenant_address"] == "+15557770000"

    chat = await w.arrive(channel="webchat", address="visitor-1")
    assert (await conversations.get(w.store, "acme", chat))["tenant_address"] == ""

    assert await w.arrive(channel="voice", address="+15551230000", kind="call") == opened
    record = await conversations.get(w.store, "acme", opened)
    assert (record["last_channel"], record["last_address"]) == ("voice", "+15551230000")
    assert int(record["last_message_at"]) >= int(record["created_at"])


async def test_different_customers_get_different_conversations():
    w = await world()
    first = await w.arrive(address="+15551230000")
    second = await w.arrive(address="+15559870000")
    assert first != second
    assert (await w.conversation(first))["customer"] != (await w.conversation(second))["customer"]


async def test_the_same_number_at_two_tenants_is_two_customers():
    w = await world(
        """
        [[tenants]]
        id = "acme"
        [[tenants.queues]]
        id = "support"
        [[tenants]]
        id = "globex"
        [[tenants.queues]]
        id = "sales"
        """
    )
    await w.deliver(contact("acme"))
    await w.deliver(contact("globex"))
    acme = await customers.find(w.store, "acme", "phone:+15551230000")
    globex = await customers.find(w.store, "globex", "phone:+15551230000")
    assert acme and globex and acme != globex


async def test_after_a_conversation_is_closed_the_next_message_opens_a_new_one_for_the_same_customer():
    w = await world()
    await w.available("amy")
    first = await w.arrive(body="first issue")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", first, "resolved")
    second = await w.arrive(body="second issue")
    assert second != first
    customer = (await w.conversation(first))["customer"]
    assert (await w.conversation(second))["customer"] == customer
    timeline = await conversations.customer_history(w.store, "acme", customer)
    assert [(c, [h.body for h in hs]) for c, hs in timeline] == [(first, ["first issue"]), (second, ["second issue"])]


async def test_an_email_reply_joins_the_thread_it_answers_even_from_another_address():
    w = await world()
    original = await w.arrive(channel="email", address="jane@example.com", provider_id="<m1@example.com>")
    reply = await w.arrive(
        channel="email",
        address="jane.work@corp.example",
        provider_id="<m2@corp.example>",
        thread=("<m1@example.com>",),
    )
    assert reply == original


async def test_linking_an_address_brings_that_channel_into_the_customers_history():
    w = await world()
    conversation = await w.arrive(channel="sms", address="+15551230000")
    customer = (await w.conversation(conversation))["customer"]
    previous = await customers.link(w.store, "acme", customer, "email:jane@example.com")
    assert previous is None
    assert await w.arrive(channel="email", address="Jane@Example.com") == conversation
    profile = await customers.profile(w.store, "acme", customer)
    assert profile["identities"] == ["email:jane@example.com", "phone:+15551230000"]


async def test_linking_an_address_moves_it_away_from_its_previous_customer():
    w = await world()
    by_email = await w.arrive(channel="email", address="jane@example.com")
    by_phone = await w.arrive(channel="sms", address="+15551230000")
    email_customer = (await w.conversation(by_email))["customer"]
    phone_customer = (await w.conversation(by_phone))["customer"]
    previous = await customers.link(w.store, "acme", phone_customer, "email:jane@example.com")
    assert previous == email_customer
    assert (await customers.profile(w.store, "acme", email_customer))["identities"] == []


async def test_merging_customers_moves_identities_and_history():
    w = await world()
    by_email = await w.arrive(channel="email", address="jane@example.com")
    by_phone = await w.arrive(channel="sms", address="+15551230000")
    keep = (await w.conversation(by_phone))["customer"]
    absorb = (await w.conversation(by_email))["customer"]
    await customers.merge(w.store, "acme", keep, absorb)
    profile = await customers.profile(w.store, "acme", keep)
    assert profile["identities"] == ["email:jane@example.com", "phone:+15551230000"]
    assert set(profile["conversations"]) == {by_email, by_phone}
    assert (await w.conversation(by_email))["customer"] == keep
    assert await customers.find(w.store, "acme", "email:jane@example.com") == keep


async def test_the_profile_remembers_the_last_agent():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive()
    await w.accept_offer("amy")
    customer = (await w.conversation(conversation))["customer"]
    assert (await customers.profile(w.store, "acme", customer))["last_agent"] == "amy"


async def test_merge_keeps_the_absorbed_customers_open_conversation() -> None:
    w = await world()
    conversation = await w.arrive(channel="sms", address="+15551230000")
    absorbed = (await w.conversation(conversation))["customer"]
    await customers.link(w.store, "acme", "known-customer", "email:jane@example.com")
    await customers.merge(w.store, "acme", "known-customer", absorbed)
    later = await w.arrive(channel="email", address="jane@example.com")
    assert later == conversation
    assert (await w.conversation(later))["customer"] == "known-customer"
