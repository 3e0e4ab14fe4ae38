"""What people read for a customer: the name an agent gave, else the channel's newest,
else the address as people write it, and never an internal id."""

from __future__ import annotations

from router import names
from tests.factories import world


def test_a_channel_name_is_cleaned_of_control_and_direction_characters_and_cut_short() -> None:
    assert names.clean("  Ana\u202e \n Lima\x00 ") == "Ana Lima"
    assert names.clean("x" * 500) == "x" * names.MAX_CHARS
    assert names.clean("\u200b\t") == ""


def test_addresses_are_written_as_people_write_them() -> None:
    assert names.formatted_address("sms", "+15551230000") == "+1 555-123-0000"
    assert names.formatted_address("voice", "+442071838750") == "+44 20 7183 8750"
    assert names.formatted_address("voice", "anonymous:CA" + "0" * 32) == "Withheld number"
    assert names.formatted_address("email", "ana@example.com") == "ana@example.com"
    assert names.formatted_address("webchat", "v-13ae7f74c0ffee") == ""  # an id means nothing to a person
    assert names.formatted_address("telegram", "123456789") == ""


def test_the_agents_name_wins_over_the_channels_which_wins_over_the_address() -> None:
    assert names.display({"name": "Ana", "channel_name": "ana_l"}, "sms", "+15551230000") == "Ana"
    assert names.display({"channel_name": "ana_l"}, "sms", "+15551230000") == "ana_l"
    assert names.display({}, "sms", "+15551230000") == "+1 555-123-0000"
    assert names.display({}, "webchat", "v-13ae7f74c0ffee") == "Web visitor 13ae"
    assert names.display({}, "telegram", "123456789") == "Telegram user"
    assert names.known_name({}) == ""


async def test_intake_keeps_the_newest_name_a_channel_gave_but_never_over_an_agents() -> None:
    w = await world()
    conversation = await w.arrive(channel="email", address="ana@example.com", name="Ana L.")
    record = await w.conversation(conversation)
    assert await names.of_conversation(w.store, "acme", record) == "Ana L."
    await w.arrive(channel="email", address="ana@example.com", name="Ana Lima")
    assert await names.of_conversation(w.store, "acme", record) == "Ana Lima"
    await w.arrive(channel="email", address="ana@example.com")  # no name this time: the last one stays
    assert await names.of_conversation(w.store, "acme", record) == "Ana Lima"

    assert await names.rename(w.store, "acme", record["customer"], " Ana  Lima-Souza ") == "Ana Lima-Souza"
    await w.arrive(channel="email", address="ana@example.com", name="A. L.")
    assert await names.of_conversation(w.store, "acme", record) == "Ana Lima-Souza"
    await names.rename(w.store, "acme", record["customer"], "")  # cleared: the channel's shows again
    assert await names.of_conversation(w.store, "acme", record) == "A. L."
