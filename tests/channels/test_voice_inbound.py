"""Incoming calls and the IVR menu, as a specification. Requests are signed with
twilio's own RequestValidator, as Twilio signs them."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from channels.voice import inbound, status, voicemail
from ops import cli, reports
from router import events
from router.keys import Keys
from router.settings import Settings
from tests.channels.voice_phone import ACME_NUMBER, CALLER, GLOBEX_NUMBER, Phone, serve

VOICE, MENU = inbound.PATH, inbound.MENU_PATH


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    async for value in serve():
        yield value


async def test_a_call_is_greeted_then_offered_the_menu_by_key_or_by_voice(phone):
    answer = await phone.answer(VOICE)
    assert answer.verbs == ["Say", "Gather"]
    greeting = answer.all("Say")[0]
    assert (greeting.text, greeting.get("language")) == ("Thank you for calling Acme.", "en-GB")
    gather = answer.one("Gather")
    assert gather.get("input") == "dtmf speech"
    assert gather.get("numDigits") == "1"
    assert gather.get("hints") == "support, help, billing, bill, invoice, night"
    assert answer.path("Gather") == f"{MENU}?attempt=1"
    assert [say.text for say in gather] == ["For support, press 1. For billing, press 2. For the night desk, press 3."]
    record = await phone.call_record()
    assert (record["state"], record["from"], record["to"]) == ("ivr", CALLER, ACME_NUMBER)
    assert await phone.inbound() == []  # nothing queued before a choice


async def test_a_key_picks_the_queue_and_the_call_enters_it_then_waits(phone):
    await phone.answer(VOICE)
    answer = await phone.answer(f"{MENU}?attempt=1", Digits="2")
    assert answer.verbs == ["Redirect"]
    assert answer.path("Redirect", "text") == "/twilio/voice/wait?n=0"
    [contact] = await phone.inbound()
    assert (contact.channel, contact.kind, contact.queue) == ("voice", "call", "billing")
    assert (contact.address, contact.to, contact.provider_id) == (CALLER, ACME_NUMBER, phone.sid)
    record = await phone.call_record()
    assert (record["state"], record["queue"], record["contact"]) == ("queued", "billing", contact.id)
    # the wait counts from queue entry; the greeting and menu are the IVR's time, kept apart
    assert contact.occurred_at == int(record["queued_at"]) >= int(record["started_at"])
    assert contact.metadata["ivr_ms"] == record["ivr_ms"] == str(int(record["queued_at"]) - int(record["started_at"]))


async def test_a_spoken_word_picks_the_queue(phone):
    await phone.answer(VOICE)
    await phone.answer(f"{MENU}?attempt=1", SpeechResult="I have a question about my Invoice.", Confidence="0.9")
    [contact] = await phone.inbound()
    assert contact.queue == "billing"


async def test_no_or_an_unknown_answer_is_asked_once_more_then_the_entry_queue_takes_the_call(phone):
    await phone.answer(VOICE)
    again = await phone.answer(f"{MENU}?attempt=1", Digits="9")
    assert again.verbs == ["Say", "Gather"]
    assert again.all("Say")[0].text == "Sorry, I did not get that."
    assert again.path("Gather") == f"{MENU}?attempt=2"
    assert await phone.inbound() == []
    answer = await phone.answer(f"{MENU}?attempt=2")  # silence (actionOnEmptyResult)
    assert answer.verbs == ["Redirect"]
    [contact] = await phone.inbound()
    assert contact.queue == "support"  # acme's entry queue


async def test_a_retried_menu_webhook_queues_the_call_once(phone):
    await phone.answer(VOICE)
    for _ in range(3):
        await phone.answer(f"{MENU}?attempt=1", Digits="1")
    [contact] = await phone.inbound()
    assert (await phone.call_record())["contact"] == contact.id


async def test_without_a_menu_the_call_goes_straight_to_the_entry_queue(phone):
    answer = await phone.answer(VOICE, to=GLOBEX_NUMBER)
    assert answer.verbs == ["Say", "Redirect"]
    assert answer.said() == "Globex, hello."
    [contact] = await phone.inbound("globex")
    assert (contact.queue, contact.kind, contact.to) == ("sales", "call", GLOBEX_NUMBER)


async def test_a_closed_queue_sends_the_caller_to_voicemail(phone):
    await phone.answer(VOICE)
    answer = await phone.answer(f"{MENU}?attempt=1", Digits="3")
    assert answer.verbs == ["Say", "Say", "Record"]
    assert answer.all("Say")[0].text == "We are closed right now; we will answer as soon as we open."
    record = answer.one("Record")
    assert record.get("transcribe") == "true"
    assert record.get("maxLength") == str(voicemail.MAX_LENGTH_S)
    assert answer.path("Record", "recordingStatusCallback") == "/twilio/acme/voice/recording"
    assert answer.path("Record", "transcribeCallback") == "/twilio/acme/voice/transcription"
    assert answer.path("Record") == voicemail.DONE_PATH
    assert await phone.inbound() == []  # no call waits in a closed queue
    assert (await phone.call_record())["state"] == "voicemail"


# --- refused requests --------------------------------------------------------------


@pytest.mark.parametrize("path", [VOICE, f"{MENU}?attempt=1", "/twilio/voice/wait?n=0", status.PATH])
@pytest.mark.parametrize(
    "signature",
    [
        lambda p, path, params: "",
        lambda p, path, params: p.signature(path, params, token="not-the-auth-token"),
        lambda p, path, params: p.signature("/twilio/voice/elsewhere", params),
        lambda p, path, params: "bm9wZQ==",
    ],
    ids=["missing", "wrong-token", "wrong-url", "garbage"],
)
async def test_a_forged_or_unsigned_request_is_refused_and_nothing_is_stored(phone, path, signature):
    before = await phone.snapshot()
    params = phone.params(Digits="1", CallStatus="completed")
    response = await phone.post(path, params, signature(phone, path, params))
    assert response.status == 403
    assert await phone.snapshot() == before


async def test_a_tampered_form_is_refused(phone):
    params = phone.params(Digits="1")
    signature = phone.signature(f"{MENU}?attempt=1", params)
    response = await phone.post(f"{MENU}?attempt=1", {**params, "Digits": "2"}, signature)
    assert response.status == 403
    assert await phone.inbound() == []


async def test_a_signed_query_cannot_be_changed(phone):
    params = phone.params()
    signature = phone.signature(f"{MENU}?attempt=1", params)
    assert (await phone.post(f"{MENU}?attempt=2", params, signature)).status == 403


async def test_the_sandbox_token_signs_a_tenant_without_a_twilio_account(phone):
    params = phone.params(to=GLOBEX_NUMBER)
    assert (await phone.post(VOICE, params)).status == 200
    forged = phone.params(to=GLOBEX_NUMBER, sid=phone.another().sid)
    assert (await phone.post(VOICE, forged, phone.signature(VOICE, forged, token="acme-auth-token"))).status == 403


async def test_without_a_sandbox_token_a_tenant_without_an_account_is_refused():
    async for phone in serve(Settings()):
        params = phone.params(to=GLOBEX_NUMBER)
        response = await phone.post(VOICE, params, phone.signature(VOICE, params, token="anything"))
        assert response.status == 403
        assert "no Twilio auth token for tenant globex" in await response.text()


async def test_another_accounts_call_to_the_tenants_number_is_refused(phone):
    response = await phone.post(VOICE, phone.params(AccountSid="AC" + "f" * 32))
    assert response.status == 403
    assert await phone.call_record() == {}


async def test_a_call_to_an_unknown_number_is_404_and_nothing_is_stored(phone):
    before = await phone.snapshot()
    response = await phone.post(VOICE, phone.params(to="+15559999999"))
    assert response.status == 404
    assert "no tenant has the voice number +15559999999" in await response.text()
    assert await phone.snapshot() == before


@pytest.mark.parametrize("name", ["CallSid", "AccountSid", "From", "To"])
async def test_a_missing_parameter_is_400(phone, name):
    params = {k: v for k, v in phone.params().items() if k != name}
    response = await phone.post(VOICE, params, phone.signature(VOICE, params))
    assert response.status == 400
    assert f"missing parameters: {name}" in await response.text()


async def test_a_malformed_call_sid_is_400(phone):
    response = await phone.post(VOICE, {**phone.params(), "CallSid": "CA123"})
    assert response.status == 400
    assert "malformed CallSid" in await response.text()


# --- callers who withheld their number ----------------------------------------------


@pytest.mark.parametrize("withheld", ["anonymous", "Restricted", "+266696687", "", "client:bob"])
async def test_a_caller_who_withheld_their_number_is_answered_and_queued_as_a_customer_of_that_call(phone, withheld):
    answer = await phone.answer(VOICE, caller=withheld)
    assert answer.verbs == ["Say", "Gather"]
    assert (await phone.call_record())["from"] == f"anonymous:{phone.sid}"
    await phone.answer(f"{MENU}?attempt=1", Digits="1", caller=withheld)
    [contact] = await phone.inbound()
    assert (contact.kind, contact.address) == ("call", f"anonymous:{phone.sid}")
    await phone.route()  # routing takes it (not dead-lettered) and the call finds its conversation
    assert await inbound.conversation_of(phone.world.store, "acme", phone.sid, await phone.call_record())


async def test_anonymous_callers_are_never_one_customer_nor_a_numbers_customer(phone):
    store = phone.world.store
    known, first, second = phone, phone.another(), phone.another()
    await known.answer(VOICE)
    await known.answer(f"{MENU}?attempt=1", Digits="1")
    for anonymous in (first, second):
        await anonymous.answer(VOICE, caller="anonymous")
        await anonymous.answer(f"{MENU}?attempt=1", Digits="1", caller="anonymous")
    await phone.route()
    found = [await inbound.conversation_of(store, "acme", p.sid, await p.call_record()) for p in (known, first, second)]
    customers = [(await phone.world.conversation(c))["customer"] for c in found]
    assert len(set(found)) == len(set(customers)) == 3  # three conversations of three customers


async def test_an_anonymous_caller_is_not_offered_a_callback_to_their_number_but_may_give_one(phone):
    from channels.voice import waiting

    await phone.answer(VOICE, caller="anonymous")
    await phone.answer(f"{MENU}?attempt=1", Digits="1", caller="anonymous")
    await phone.route()
    offer = await phone.answer(waiting.CHOICE_PATH, Digits="1", caller="anonymous")
    assert "We will call you back at" not in offer.said()
    assert offer.path("Gather") == waiting.CALLBACK_NUMBER_PATH  # asked for a number instead
    # a "1" (confirm their own number) never offered, forged or replayed, asks for a number too
    confirm = await phone.answer(waiting.CALLBACK_PATH, Digits="1", caller="anonymous")
    assert confirm.path("Gather") == waiting.CALLBACK_NUMBER_PATH
    assert [c.kind for c in await phone.inbound()] == ["call"]
    done = await phone.answer(waiting.CALLBACK_NUMBER_PATH, Digits="12025550143#", caller="anonymous")
    assert done.verbs == ["Say", "Hangup"]
    callback = (await phone.inbound())[-1]
    # the customer of the number they gave: the only one they told us
    assert (callback.kind, callback.address, callback.metadata["dial"]) == ("callback", "+12025550143", "+12025550143")


async def test_the_report_counts_the_answer_wait_from_queue_entry_not_the_ivr(phone, capsys):
    # 30 s in the greeting and menu, then answered at once: ASA and service level see no wait
    await phone.answer(VOICE)
    key = Keys("acme").call(phone.sid)
    started = int((await phone.call_record())["started_at"])
    await phone.world.store.redis.hset(key, "started_at", str(started - 30_000))
    await phone.answer(f"{MENU}?attempt=1", Digits="1")
    await phone.route()
    await phone.world.available("amy")
    await phone.world.accept_offer("amy")
    [accepted] = await phone.world.events(events.Accepted)
    assert accepted.waited_ms < 30_000
    tenant = phone.world.tenant
    day = dt.datetime.now(ZoneInfo(tenant.timezone)).date()
    result = await reports.report(phone.world.store, tenant, "day", day)
    [support] = [row for row in result.queues if row.queue == "support"]
    assert (support.handled, support.service_level) == (1, 1.0)
    assert support.asa_s is not None and support.asa_s < 30
    # what `contactrouter report` prints is that report
    args = argparse.Namespace(tenant="acme", period="day", date=day, by="queue", csv=None, short_abandon=5.0,
                              action=None, until=None)  # fmt: skip
    await cli._report(phone.world.store, phone.world.deployment, args)
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("support")]
    assert "100.0%" in row and " 0s " in row  # service level and ASA
