"""Routing by the customer's language: given by the channel, or detected from the first
message; kept on the conversation; a tenant's `entry_by_language` sends it to a queue whose
target picks the agents who speak it ('yue' in languages)."""

# ruff: noqa: RUF001 (Chinese is written with full-width punctuation)

from __future__ import annotations

import pytest

from router import language
from router.errors import ConfigError
from tests.factories import deployment, world

BY_LANGUAGE = """
[[tenants]]
id = "acme"
entry = { default = "support" }
entry_by_language = { yue = "cantonese", zh = "mandarin" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "cantonese"
target = "'support' in skills and 'yue' in languages"

[[tenants.queues]]
id = "mandarin"
target = "'support' in skills and 'zh' in languages"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }
languages = ["en"]

[[tenants.agents]]
id = "kit"
skills = { support = 1 }
languages = ["yue", "zh", "en"]

[[tenants.agents]]
id = "mei"
skills = { support = 1 }
languages = ["zh", "en"]
"""

CANTONESE = "我部手機唔知點解上唔到網，你哋可唔可以幫我睇下？"
MANDARIN = "你好，我的手机从昨天开始就上不了网，请帮我看一下。"


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        (CANTONESE, "yue"),
        (MANDARIN, "zh"),
        ("我的帳單為什麼這個月這麼貴？請幫我查一下。", "zh"),  # Traditional characters, Mandarin
        ("My internet has been down since yesterday, can you help?", "en"),
        ("Bonjour, ma facture est beaucoup trop élevée ce mois-ci.", "fr"),
        ("12345 678", ""),  # nothing to tell a language by
        ("", ""),
    ],
)
def test_the_language_is_told_from_what_the_customer_wrote(text: str, tag: str) -> None:
    assert language.detect(text) == tag


async def test_a_cantonese_speaker_reaches_the_agent_who_speaks_cantonese() -> None:
    w = await world(BY_LANGUAGE)
    await w.available("amy", "mei", "kit")
    conversation = await w.arrive(body=CANTONESE, address="+85291234567")
    record = await w.conversation(conversation)
    assert (record["language"], record["queue"], record["agent"]) == ("yue", "cantonese", "kit")


async def test_a_mandarin_speaker_reaches_a_mandarin_speaker_and_english_goes_by_channel() -> None:
    w = await world(BY_LANGUAGE)
    await w.available("mei")
    mandarin = await w.arrive(body=MANDARIN, address="+8613800138000")
    assert (await w.conversation(mandarin))["queue"] == "mandarin"
    assert (await w.conversation(mandarin))["agent"] == "mei"
    english = await w.arrive(body="My internet is down since yesterday.", address="+15551230001")
    assert (await w.conversation(english))["queue"] == "support"
    assert (await w.conversation(english))["language"] == "en"


async def test_the_language_a_channel_gives_wins_over_detection_and_a_region_matches_its_language() -> None:
    w = await world(BY_LANGUAGE)
    await w.available("kit")
    conversation = await w.arrive(body="hello, my bill please", language="yue-HK")
    record = await w.conversation(conversation)
    assert (record["language"], record["queue"], record["agent"]) == ("yue-HK", "cantonese", "kit")


async def test_a_later_message_in_another_language_does_not_move_the_conversation() -> None:
    w = await world(BY_LANGUAGE)
    conversation = await w.arrive(body=CANTONESE)
    again = await w.arrive(body="Sorry, I can also write in English if that is easier.")
    assert again == conversation
    assert (await w.conversation(conversation))["language"] == "yue"


def test_a_language_entry_must_name_a_queue_of_the_tenant() -> None:
    with pytest.raises(ConfigError, match=r"entry_by_language\.yue"):
        deployment(BY_LANGUAGE.replace('yue = "cantonese"', 'yue = "nowhere"'))
