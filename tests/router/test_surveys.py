"""Satisfaction surveys: planned at the close, sent once by the timers, answered by a bare
1-5 (anything else is routed as a message), never to an opted-out address, within caps."""

from __future__ import annotations

import re

import pytest

from router import agents, conversations, customers, events, survey_links, surveys
from router.app import cli, survey_cli
from router.errors import ConfigError
from router.keys import Keys
from tests.factories import contact, deployment, inbound_entries, route_entries, world

SURVEYED = """
[[tenants]]
id = "acme"
name = "Acme"
timezone = "Europe/London"
entry = {{ default = "support" }}

[tenants.survey]
{survey}

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.queues]]
id = "billing"
target = "'billing' in skills"

[[tenants.agents]]
id = "amy"
name = "Amy Pond"
skills = {{ support = 1, billing = 1 }}
"""


async def surveyed_world(survey: str = ""):
    return await world(SURVEYED.format(survey=survey))


async def closed(w, *, channel: str = "sms", address: str = "+15551230000", disposition: str = "resolved", **fields):
    conversation = await w.assigned_to("amy", channel=channel, address=address, **fields)
    await agents.close(w.store, w.tenant, "amy", conversation, disposition)
    return conversation


async def reply(w, body: str, address: str = "+15551230000") -> None:
    """The customer texts `body`; the routing worker takes it (every entry done)."""
    entries = await inbound_entries(w.store, [contact(w.tenant.id, address=address, body=body)])
    assert await route_entries(w.store, w.deployment, entries) == set(entries)


async def surveys_sent(w) -> list[events.OutboundMessage]:
    return [m for m in await w.outgoing() if m.metadata.get("survey")]


async def test_closing_sets_the_survey_timer_in_the_same_step_and_the_timer_asks_once():
    w = await surveyed_world("delay_seconds = 600")
    conversation = await closed(w)
    [(member, due)] = (await w.timers("survey:")).items()
    assert member == f"survey:{conversation}"
    [closed_event] = await w.events(events.Closed)
    assert due - closed_event.occurred_at == pytest.approx(600_000, abs=2000)
    await w.fire("survey:")
    [survey] = await surveys_sent(w)
    assert (survey.channel, survey.to, survey.automatic) == ("sms", "+15551230000", True)
    assert "1 (poor) to 5 (excellent)" in survey.body
    assert await w.timers("survey:") == {}
    # the timer again (a worker that died after sending, a lease that ran out): nothing more
    await w.store.redis.zadd(w.keys.timers, {f"survey:{conversation}": 0})
    await w.fire("survey:")
    assert len(await surveys_sent(w)) == 1
    [sent] = await w.events(events.SurveySent)
    assert (sent.outcome, sent.queue, sent.agent, sent.message) == ("sent", "support", "amy", survey.id)


async def test_a_tenant_without_a_survey_or_a_channel_it_does_not_ask_on_gets_no_timer():
    w = await world(SURVEYED.format(survey="").replace("[tenants.survey]\n", ""))
    await closed(w)
    assert await w.timers("survey:") == {}
    w = await surveyed_world('channels = ["webchat"]')
    await closed(w)
    assert await w.timers("survey:") == {}


async def test_a_call_is_not_surveyed_at_its_close_as_its_keypad_survey_was_asked_on_the_call():
    w = await surveyed_world('channels = ["voice", "sms"]')
    await closed(w, channel="voice")
    assert await w.timers("survey:") == {}


async def test_only_the_dispositions_named_are_surveyed():
    w = await surveyed_world('dispositions = ["resolved"]')
    await closed(w, disposition="no_answer")
    assert await w.timers("survey:") == {}
    await closed(w, address="+15551230001")
    assert len(await w.timers("survey:")) == 1


def test_the_sampled_share_is_decided_by_the_conversation_id_alike_everywhere():
    ids = [events.new_id() for _ in range(2000)]
    chosen = [c for c in ids if surveys.sampled(c, 0.25)]
    assert 400 < len(chosen) < 600
    assert chosen == [c for c in ids if surveys.sampled(c, 0.25)]
    assert all(surveys.sampled(c, 1.0) for c in ids[:10])
    assert not any(surveys.sampled(c, 0.0) for c in ids[:10])


async def test_an_opted_out_or_do_not_contact_address_is_never_asked():
    w = await surveyed_world()
    first = await closed(w, address="+15551230001")
    await w.store.redis.sadd(w.keys.suppression("sms"), "+15551230001")
    await w.fire("survey:")
    second = await closed(w, address="+15551230002")
    await w.store.redis.sadd(w.keys.do_not_contact, "+15551230002")
    await w.fire("survey:")
    assert await surveys_sent(w) == []
    outcomes = {e.conversation: e.outcome for e in await w.events(events.SurveySent)}
    assert outcomes == {first: "opted_out", second: "do_not_contact"}
    assert (await w.conversation(first))["survey"] == "opted_out"


async def test_the_survey_caps_count_per_address_and_channel():
    w = await surveyed_world('caps = [{ channel = "sms", max = 1, days = 30 }]')
    await closed(w)
    await w.fire("survey:")
    await closed(w)
    await w.fire("survey:")
    assert len(await surveys_sent(w)) == 1
    assert [e.outcome for e in await w.events(events.SurveySent)] == ["sent", "capped"]
    await closed(w, address="+15551230009")  # another address has its own allowance
    await w.fire("survey:")
    assert len(await surveys_sent(w)) == 2


async def test_a_customer_who_wrote_again_before_the_survey_is_not_asked():
    w = await surveyed_world("delay_seconds = 60")
    await closed(w)
    await w.arrive(body="one more thing")
    await w.fire("survey:")
    assert await surveys_sent(w) == []
    assert [e.outcome for e in await w.events(events.SurveySent)] == ["wrote_again"]


async def test_a_bare_rating_answers_the_survey_and_is_not_routed():
    w = await surveyed_world()
    conversation = await closed(w)
    await w.fire("survey:")
    before = len(await w.events(events.Queued))
    await reply(w, " 4 ")
    assert len(await w.events(events.Queued)) == before  # no new conversation
    record = await w.conversation(conversation)
    assert (record["survey"], record["survey_rating"]) == ("rated", "4")
    [result] = await w.events(events.SurveyResult)
    assert (result.conversation, result.rating, result.queue, result.agent, result.low) == (
        conversation,
        4,
        "support",
        "amy",
        False,
    )
    day = record["survey_day"]
    figures = {k.decode(): int(v) for k, v in (await w.store.redis.hgetall(w.keys.survey_day(day))).items()}
    assert figures == {
        "q:support:sent": 1,
        "a:amy:sent": 1,
        "q:support:answered": 1,
        "a:amy:answered": 1,
        "q:support:sum": 4,
        "a:amy:sum": 4,
        "q:support:r4": 1,
        "a:amy:r4": 1,
        "q:support:good": 1,
        "a:amy:good": 1,
    }


async def test_a_reply_that_is_not_a_rating_is_routed_as_a_message():
    w = await surveyed_world()
    conversation = await closed(w)
    await w.fire("survey:")
    new = await w.arrive(body="4 of my parcels are missing")
    assert new != conversation
    assert (await w.conversation(new))["state"] in ("queued", "reserved")
    assert "survey_rating" not in await w.conversation(conversation)
    # the customer is in a new conversation now: a bare digit is a message to it
    await reply(w, "2")
    assert "survey_rating" not in await w.conversation(conversation)
    log = [e.body for e in await conversations.history(w.store, "acme", new)]
    assert log == ["4 of my parcels are missing", "2"]


async def test_a_rating_after_the_answer_window_is_routed_as_a_message():
    w = await surveyed_world("answer_hours = 1")
    conversation = await closed(w)
    await w.fire("survey:")
    await w.store.redis.hset(w.keys.conversation(conversation), "survey_until", "1")
    new = await w.arrive(body="5")
    assert new != conversation
    assert "survey_rating" not in await w.conversation(conversation)


async def test_the_first_rating_counts_and_a_low_one_opens_a_follow_up():
    w = await surveyed_world("low_rating = 2")
    conversation = await closed(w)
    await w.fire("survey:")
    record = await w.conversation(conversation)
    ident = "phone:+15551230000"
    assert await surveys.rate(w.store, w.tenant, conversation, 2, channel="sms", ident=ident) == ("rated", 2)
    assert await surveys.rate(w.store, w.tenant, conversation, 5, channel="sms", ident=ident) == ("already", 2)
    assert await surveys.comment(w.store, w.tenant, conversation, "slow", channel="sms", ident=ident) == "commented"
    assert await surveys.comment(w.store, w.tenant, conversation, "again", channel="sms", ident=ident) == "already"
    [followup] = await surveys.followups(w.store, "acme")
    assert (followup["conversation"], followup["rating"], followup["comment"]) == (conversation, "2", "slow")
    assert await surveys.follow_up_done(w.store, "acme", conversation, "sue")
    assert await surveys.followups(w.store, "acme") == []
    figures = await w.store.redis.hgetall(w.keys.survey_day(record["survey_day"]))
    assert int(figures[b"q:support:answered"]) == 1 and int(figures[b"q:support:comments"]) == 1


async def test_someone_else_cannot_rate_a_customers_conversation():
    w = await surveyed_world()
    conversation = await closed(w)
    await w.fire("survey:")
    outcome = await surveys.rate(w.store, w.tenant, conversation, 1, channel="sms", ident="phone:+15559999999")
    assert outcome == ("none", 0)
    assert "survey_rating" not in await w.conversation(conversation)


@pytest.mark.parametrize(
    ("body", "rating"),
    [
        ("5", 5),
        (" 1 ", 1),
        ("3.", 3),
        ("\uff14", 4),
        ("4\u3002", 4),
        ("0", None),
        ("6", None),
        ("45", None),
        ("4 stars", None),
        ("", None),
    ],
)
def test_what_counts_as_a_bare_rating(body, rating):
    assert surveys.rating_of(body) == rating


async def test_the_wording_comes_from_the_tenants_template_in_the_customers_locale(tmp_path, monkeypatch):
    w = await surveyed_world()
    folder = tmp_path / "surveys" / "acme" / "zh"
    folder.mkdir(parents=True)
    (folder / "sms.txt").write_text("{{ tenant_name }}: 请回复 1-5 为 {{ agent_name }} 打分。", "utf-8")
    monkeypatch.setattr("router.templating._folder", tmp_path)
    assert surveys.wording(w.tenant, "sms", "zh-CN", {"tenant_name": "Acme", "agent_name": "Amy"})[0] == (
        "Acme: 请回复 1-5 为 Amy 打分。"
    )
    # an unknown locale falls back to the tenant's default, then the built-in wording
    assert surveys.wording(w.tenant, "sms", "fr", {})[0] == surveys.FALLBACK["sms"]


async def test_a_template_cannot_escape_the_sandbox(tmp_path, monkeypatch):
    w = await surveyed_world()
    folder = tmp_path / "surveys" / "acme" / "en"
    folder.mkdir(parents=True)
    (folder / "sms.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", "utf-8")
    monkeypatch.setattr("router.templating._folder", tmp_path)
    assert surveys.wording(w.tenant, "sms", "en", {})[0] == surveys.FALLBACK["sms"]


def test_the_keys_of_the_survey_figures():
    assert Keys("acme").survey_day("2026-12-08") == "cr:{acme}:csat:day:2026-12-08"


@pytest.mark.parametrize("locale", ["en", "zh"])
@pytest.mark.parametrize("channel", ["sms", "telegram", "webchat", "email", "voice"])
async def test_every_shipped_wording_renders_in_the_sandbox(locale, channel):
    w = await surveyed_world()
    fields = {"tenant_name": "Acme", "agent_name": "Amy", "customer": "Jane Doe", "customer_first_name": "Jane"}
    body, second = surveys.wording(w.tenant, channel, locale, fields)
    assert body not in surveys.FALLBACK.values()
    assert "5" in body
    assert "Acme" in body or channel == "webchat"
    if channel == "voice":  # the thanks said after a keypad rating
        assert second and "{" not in second and (locale == "en" or second != surveys.THANKS)
    else:  # the email subject
        assert "Acme" in second


async def test_a_telegram_customers_language_picks_the_wording():
    w = await surveyed_world('channels = ["telegram"]')
    conversation = await closed(w, channel="telegram", address="4242", metadata={"language": "zh-hans"})
    await w.fire("survey:")
    [survey] = await surveys_sent(w)
    assert survey.body.startswith("感谢您联系Acme")
    assert conversation == survey.metadata["survey"]


async def test_on_a_real_redis_a_survey_goes_once_and_a_texted_rating_counts(real_store):
    """The same scripts on Redis's own Lua (cmsgpack, XPENDING by consumer), not the embedded store's."""
    w = await world(SURVEYED.format(survey="low_rating = 3"), store=real_store)
    conversation = await closed(w)
    await w.fire("survey:")
    await w.store.redis.zadd(w.keys.timers, {f"survey:{conversation}": 0})
    await w.fire("survey:")
    assert len(await surveys_sent(w)) == 1
    await reply(w, "3")
    record = await w.conversation(conversation)
    assert (record["survey_rating"], record["survey_followup"]) == ("3", "open")
    [sent] = await w.events(events.SurveySent)
    [result] = await w.events(events.SurveyResult)
    assert (sent.outcome, result.rating, result.low, result.agent) == ("sent", 3, True, "amy")
    assert result.sent_at == int(record["survey_sent_at"])


async def asked_on_a_call(w) -> None:
    """The voice keypad survey's path through survey_send.lua and survey_answer.lua: asked
    before the close, recorded as sent, never answered by a text."""
    conversation = await w.assigned_to("amy", channel="voice", address="+15551230000")
    outcome, question, thanks = await surveys.ask_on_call(w.store, w.tenant, conversation, locale="en-GB")
    assert (outcome, "keypad" in question, thanks) == ("sent", True, "Thank you for your rating. Goodbye.")
    assert (await surveys.ask_on_call(w.store, w.tenant, conversation, locale="en-GB"))[0] == "decided:sent"
    assert await surveys_sent(w) == []  # the call's TwiML asks: nothing on the outbound stream
    customer = (await w.conversation(conversation))["customer"]
    assert await w.store.redis.hget(w.keys.customer(customer), "survey") is None
    assert await surveys.rate(w.store, w.tenant, conversation, 5, channel="voice") == ("rated", 5)
    assert await surveys.rate(w.store, w.tenant, conversation, 1, channel="voice") == ("already", 5)


async def test_a_call_is_asked_while_open_once_with_nothing_queued_and_no_pending_text_answer():
    await asked_on_a_call(await surveyed_world('channels = ["voice"]'))


async def test_on_a_real_redis_a_call_is_asked_while_open_and_rated_once(real_store):
    await asked_on_a_call(await world(SURVEYED.format(survey='channels = ["voice"]'), store=real_store))


async def test_a_digit_after_another_message_in_the_same_batch_belongs_to_the_new_conversation():
    w = await surveyed_world()
    conversation = await closed(w)
    await w.fire("survey:")
    items = [contact("acme", body="my meter broke again"), contact("acme", body="5")]
    entries = await inbound_entries(w.store, items)
    assert await route_entries(w.store, w.deployment, entries) == set(entries)
    assert "survey_rating" not in await w.conversation(conversation)
    [_first, second] = await w.events(events.Queued)
    bodies = [e.body for e in await conversations.history(w.store, "acme", second.conversation)]
    assert bodies == ["my meter broke again", "5"]


@pytest.mark.parametrize(
    ("survey", "problem"),
    [
        ('channels = ["fax"]', "survey.channels"),
        ('dispositions = ["happy"]', "unknown disposition 'happy'"),
        ("share = 1.5", "survey.share"),
        ("low_rating = 6", "survey.low_rating"),
        ('channels = ["sms", "sms"]', "listed twice"),
        ('caps = [{ channel = "sms", max = 0, days = 7 }]', "max"),
    ],
)
def test_a_survey_section_that_cannot_work_is_refused_naming_its_field(survey, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        deployment(SURVEYED.format(survey=survey))


async def test_a_share_of_zero_asks_nobody_and_the_share_is_the_one_sampled():
    w = await surveyed_world("share = 0.0")
    await closed(w)
    assert await w.timers("survey:") == {}
    w = await surveyed_world("share = 0.5")
    for n in range(8):
        conversation = await closed(w, address=f"+1555123{n:04d}")
        planned = f"survey:{conversation}" in await w.timers("survey:")
        assert planned == surveys.sampled(conversation, 0.5)


async def test_the_cli_rotates_the_link_key_and_lists_the_low_ratings(capsys):
    w = await surveyed_world()
    conversation = await closed(w)
    await w.fire("survey:")
    await reply(w, "1")
    before = await survey_links.key_ring(w.store, "acme")
    rotate = cli._parser().parse_args(["survey", "rotate-link-key", "--tenant", "acme"])
    await survey_cli.command(w.store, w.deployment, rotate)
    after = await survey_links.key_ring(w.store, "acme")
    assert after.current != before.current and after.keys[1] == before.current
    followups = cli._parser().parse_args(["survey", "followups", "--tenant", "acme"])
    await survey_cli.command(w.store, w.deployment, followups)
    printed = capsys.readouterr().out
    assert "rating links are signed with a new key" in printed
    assert f"{conversation} rated 1 of 5 (support, amy)" in printed


@pytest.mark.parametrize(("scope", "outcome"), [("person", "opted_out"), ("channel", "sent")])
async def test_an_opt_out_on_another_channel_of_the_person_counts_under_the_tenants_scope(scope, outcome):
    w = await world(SURVEYED.format(survey="").replace('timezone = "Europe/London"', f'opt_out_scope = "{scope}"'))
    conversation = await closed(w, channel="email", address="jane@example.com")
    customer = (await w.conversation(conversation))["customer"]
    await customers.link(w.store, "acme", customer, customers.identity("sms", "+15551230000"))
    await w.store.redis.sadd(w.keys.suppression("sms"), "+15551230000")  # she texted STOP once
    await w.fire("survey:")
    assert [e.outcome for e in await w.events(events.SurveySent)] == [outcome]


def test_the_config_check_accepts_voice_among_the_survey_channels_and_caps():
    survey = 'channels = ["voice", "sms"]\ncaps = [{ channel = "voice", max = 1, days = 30 }]'
    [tenant] = deployment(SURVEYED.format(survey=survey)).tenants
    assert tenant.survey.asks_on("voice") and not tenant.survey.asks_on("email")
    assert [cap.channel for cap in tenant.survey.caps_on("voice")] == ["voice"]
    # left out, `channels` keeps the channels it meant before voice could ask
    [tenant] = deployment(SURVEYED.format(survey="")).tenants
    assert not tenant.survey.asks_on("voice")
