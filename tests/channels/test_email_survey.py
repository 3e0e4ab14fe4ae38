"""Survey email end to end in the sandbox: the survey mail carries five signed one-click
rating links (as buttons and as text lines); each opens the rating page on the web
process, which records the first rating and takes an optional comment. A link forged,
altered or of another tenant records nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.email import compose
from router import agents, events, survey_links
from router.app.web import application
from router.keyring import KeyRing
from router.settings import Settings
from tests.factories import World, world

TENANTS = """
[[tenants]]
id = "acme"
name = "Acme <Energy>"
brand_color = "#0a7d3b"
entry = { default = "support" }
survey = { channels = ["email"], low_rating = 2 }
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"

[[tenants]]
id = "globex"
survey = {}
[[tenants.queues]]
id = "desk"
"""
CUSTOMER = "jane@example.com"


@pytest.fixture
async def web() -> AsyncIterator[tuple[World, TestClient]]:
    w = await world(TENANTS)
    async with TestClient(TestServer(application(w.store, w.deployment, Settings()))) as client:
        yield w, client


async def surveyed(w: World) -> tuple[str, events.OutboundMessage]:
    conversation = await w.assigned_to("amy", channel="email", address=CUSTOMER, subject="Meter", body="It broke")
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    await w.fire("survey:")
    [survey] = [m for m in await w.outgoing() if m.metadata.get("survey")]
    return conversation, survey


def path(link: str) -> str:
    return urlsplit(link).path


async def test_the_survey_mail_carries_a_signed_link_per_rating_as_buttons_and_text(web):
    w, _client = web
    conversation, survey = await surveyed(w)
    assert (survey.channel, survey.to) == ("email", CUSTOMER)
    assert survey.subject == "How did we do? Rate your conversation with Acme <Energy>"
    assert "Thank you for contacting Acme <Energy>. How did amy do?" in survey.body
    links = [survey.metadata[f"survey:rating:{n}"] for n in range(1, 6)]
    assert all(link.startswith("http://127.0.0.1:8080/survey/acme/") for link in links)
    ring = await survey_links.key_ring(w.store, "acme")
    assert [survey_links.read_token(ring, "acme", link.rsplit("/", 1)[1]) for link in links] == [
        (conversation, n) for n in range(1, 6)
    ]
    draft = compose.Draft(sender="help@acme.test", to=CUSTOMER, subject=survey.subject, message_id="m1@acme.test")
    mail = compose.build(w.tenant, survey, draft)
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for n, link in enumerate(links, 1):
        assert f"{n} of 5: {link}" in text
        assert f'href="{link}"' in html


async def test_one_click_records_the_rating_and_a_comment_can_follow(web):
    w, client = web
    conversation, survey = await surveyed(w)
    response = await client.get(path(survey.metadata["survey:rating:2"]))
    page = await response.text()
    assert response.status == 200
    assert "Thank you for your rating" in page and "2 of 5" in page
    assert "Acme &lt;Energy&gt;" in page  # the tenant's name, escaped
    assert response.headers["Referrer-Policy"] == "no-referrer"
    record = await w.conversation(conversation)
    assert (record["survey_rating"], record["survey_followup"]) == ("2", "open")  # low: a follow-up opens
    # another of the mail's links later: the first rating stands
    again = await client.get(path(survey.metadata["survey:rating:5"]))
    assert "You have rated this already" in await again.text() and "2 of 5" in await again.text()
    posted = await client.post(path(survey.metadata["survey:rating:2"]), data={"comment": "Took <b>three</b> calls"})
    assert "We have your comment" in await posted.text()
    record = await w.conversation(conversation)
    assert (record["survey_rating"], record["survey_comment"]) == ("2", "Took <b>three</b> calls")
    [rated, commented] = await w.events(events.SurveyResult)
    assert (rated.rating, rated.comment, rated.low) == (2, "", True)
    assert (commented.rating, commented.comment) == (2, "Took <b>three</b> calls")
    empty = await client.post(path(survey.metadata["survey:rating:2"]), data={"comment": "  "})
    assert empty.status == 400 and "Write a comment" in await empty.text()


async def test_a_prefetch_or_a_head_records_nothing(web):
    w, client = web
    conversation, survey = await surveyed(w)
    link = path(survey.metadata["survey:rating:1"])
    assert (await client.get(link, headers={"Sec-Purpose": "prefetch"})).status == 200
    assert (await client.head(link)).status == 405
    assert "survey_rating" not in await w.conversation(conversation)


def _tampered(token: str, **changes: object) -> str:
    body, mac = token.split(".")
    tenant, conversation, rating = msgspec.msgpack.decode(survey_links._unb64(body))
    fields = {"tenant": tenant, "conversation": conversation, "rating": rating, **changes}
    payload = msgspec.msgpack.encode([fields["tenant"], fields["conversation"], fields["rating"]])
    return f"{survey_links._b64(payload)}.{mac}"


async def test_a_forged_or_altered_link_is_refused_and_records_nothing(web):
    w, client = web
    conversation, survey = await surveyed(w)
    token = survey.metadata["survey:rating:5"].rsplit("/", 1)[1]
    forged_ring = KeyRing(("not-the-tenants-key",))
    refused = [
        f"/survey/acme/{_tampered(token, rating=1)}",  # another rating, the same signature
        f"/survey/acme/{_tampered(token, conversation='01JOTHERCONVERSATION000000')}",
        f"/survey/acme/{survey_links.make_token(forged_ring, 'acme', conversation, 5)}",  # signed with another key
        f"/survey/globex/{token}",  # the link of another tenant
        f"/survey/acme/{token}x",
        "/survey/acme/not-a-token",
        f"/survey/nobody/{token}",
    ]
    for link in refused:
        response = await client.get(link)
        assert response.status == 404, link
        assert (await client.post(link, data={"comment": "hi"})).status == 404, link
    assert "survey_rating" not in await w.conversation(conversation)
    assert await w.events(events.SurveyResult) == []


async def test_links_signed_before_a_key_rotation_still_work(web):
    w, client = web
    conversation, survey = await surveyed(w)
    await survey_links.rotate(w.store, "acme")
    assert (await client.get(path(survey.metadata["survey:rating:4"]))).status == 200
    assert (await w.conversation(conversation))["survey_rating"] == "4"


async def test_a_link_after_the_answer_window_says_the_survey_closed(web):
    w, client = web
    conversation, survey = await surveyed(w)
    await w.store.redis.hset(w.keys.conversation(conversation), "survey_until", "1")
    response = await client.get(path(survey.metadata["survey:rating:4"]))
    assert response.status == 410 and "This survey has closed" in await response.text()
    assert "survey_rating" not in await w.conversation(conversation)
