"""SMS delivery status callbacks: signed reports move a message only forward, once."""

from __future__ import annotations

from importlib import resources

import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from channels.sms import optout
from channels.sms.outbound import SmsSender
from router import events, scripts
from router.app import web
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_sms_outbound import ACCOUNT, CUSTOMER, PUBLIC, TOKEN, delivery, send, sms_world
from tests.channels.twilio_api import TwilioApi
from tests.factories import World
from tests.factories import outbound as outbound_message
from workers.dispatch import Dispatcher

PATH = "/twilio/acme/sms/status"
KEYS = Keys("acme")


class Twilio:
    """The world, the fake Twilio API the messages go out through, and the web
    process Twilio reports back to."""

    def __init__(self, w: World, api: TwilioApi, web_client: TestClient, sender: SmsSender) -> None:
        self.w, self.api, self.web, self.sender = w, api, web_client, sender

    async def sent(self) -> tuple[events.OutboundMessage, str]:
        """A message the dispatcher sent through Twilio, and its MessageSid."""
        message = outbound_message()
        assert await send(self.w, self.sender, message) == "sent"
        return message, self.api.sids[-1]

    async def report(self, sid: str, status: str, *, path: str = PATH, signature: str | None = None, **extra):
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT, "To": CUSTOMER, **extra}
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, form)
        return await self.web.post(path, data=form, headers={"X-Twilio-Signature": signature})

    async def reported(self, message: events.OutboundMessage) -> list[tuple[str, str]]:
        """The delivery events of a message: (status, error)."""
        return [(e.status, e.error) for e in await self.w.events(events.DeliveryStatus) if e.message == message.id]


@pytest.fixture
async def twilio():
    w = await sms_world()
    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url, public_url=PUBLIC)
        sender = SmsSender(w.store, w.deployment, settings)
        async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
            yield Twilio(w, api, client, sender)
        await sender.close()


async def test_a_signed_delivery_report_moves_the_message_on_and_is_an_event(twilio):
    message, sid = await twilio.sent()
    response = await twilio.report(sid, "delivered")
    assert response.status == 200
    record = await delivery(twilio.w, message)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("delivered", sid, "1")
    [event] = [e for e in await twilio.w.events(events.DeliveryStatus) if e.status == "delivered"]
    assert (event.message, event.provider_id, event.channel, event.direction) == (message.id, sid, "sms", "out")
    assert (event.tenant, event.attempt, event.error) == ("acme", 1, "")
    assert await twilio.reported(message) == [("sent", ""), ("delivered", "")]


async def test_the_conversation_goes_along_with_the_event(twilio):
    message = outbound_message(conversation="01CONVERSATION")
    await send(twilio.w, twilio.sender, message)
    await twilio.report(twilio.api.sids[-1], "delivered")
    [*_, event] = await twilio.w.events(events.DeliveryStatus)
    assert (event.status, event.conversation) == ("delivered", "01CONVERSATION")


async def test_a_forged_report_is_refused_and_changes_nothing(twilio):
    message, sid = await twilio.sent()
    forged = RequestValidator("not-the-token").compute_signature(PUBLIC + PATH, {"MessageSid": sid})
    assert (await twilio.report(sid, "failed", signature=forged)).status == 403
    assert (await twilio.report(sid, "failed", signature="")).status == 403
    assert (await delivery(twilio.w, message))["status"] == "sent"
    assert await twilio.reported(message) == [("sent", "")]


async def test_a_report_signed_for_another_tenants_url_is_refused(twilio):
    message, sid = await twilio.sent()
    signature = RequestValidator(TOKEN).compute_signature(
        PUBLIC + "/twilio/globex/sms/status", {"MessageSid": sid, "MessageStatus": "failed"}
    )
    assert (await twilio.report(sid, "failed", signature=signature)).status == 403
    assert (await delivery(twilio.w, message))["status"] == "sent"


async def test_a_report_for_an_unknown_tenant_is_not_found(twilio):
    _message, sid = await twilio.sent()
    assert (await twilio.report(sid, "delivered", path="/twilio/initech/sms/status")).status == 404


async def test_a_report_without_a_sid_or_status_is_a_bad_request(twilio):
    assert (await twilio.report("", "delivered")).status == 400


async def test_a_report_on_a_message_that_is_not_ours_is_answered_and_ignored(twilio, caplog):
    response = await twilio.report("SM" + "0" * 32, "delivered")
    assert response.status == 200  # Twilio retrying it would not make it ours
    assert await twilio.w.events(events.DeliveryStatus) == []
    assert "unknown message SM000" in caplog.text


async def test_a_late_report_never_moves_a_message_back(twilio):
    message, sid = await twilio.sent()
    await twilio.report(sid, "delivered")
    await twilio.report(sid, "sent")  # Twilio does not promise order
    assert (await delivery(twilio.w, message))["status"] == "delivered"
    await twilio.report(sid, "read")
    await twilio.report(sid, "delivered")
    assert (await delivery(twilio.w, message))["status"] == "read"
    assert await twilio.reported(message) == [("sent", ""), ("delivered", ""), ("read", "")]


async def test_a_repeated_report_has_no_second_effect(twilio):
    message, sid = await twilio.sent()
    for _ in range(3):
        assert (await twilio.report(sid, "delivered")).status == 200
    assert await twilio.reported(message) == [("sent", ""), ("delivered", "")]


async def test_failed_and_undelivered_are_final_and_keep_twilios_error_code(twilio):
    message, sid = await twilio.sent()
    await twilio.report(sid, "undelivered", ErrorCode="30003")
    await twilio.report(sid, "delivered")
    await twilio.report(sid, "failed", ErrorCode="30008")
    record = await delivery(twilio.w, message)
    assert (record["status"], record["error"]) == ("undelivered", "Twilio error 30003")
    assert await twilio.reported(message) == [("sent", ""), ("undelivered", "Twilio error 30003")]


async def test_reports_from_before_twilio_hands_the_message_on_change_nothing(twilio):
    message, sid = await twilio.sent()
    for status in ("accepted", "queued", "sending"):
        assert (await twilio.report(sid, status)).status == 200
    assert (await delivery(twilio.w, message))["status"] == "sent"
    assert await twilio.reported(message) == [("sent", "")]


async def test_a_report_that_overtakes_the_dispatchers_own_record_settles_the_message(twilio):
    class ReportedAtOnce:
        """Twilio's report arrives before the dispatcher has recorded the send."""

        channel = "sms"

        async def send(self, message):
            sid = await twilio.sender.send(message)
            assert (await twilio.report(sid, "delivered")).status == 200
            return sid

        async def reconcile(self, message):
            return await twilio.sender.reconcile(message)

    message = outbound_message()
    dispatcher = Dispatcher(twilio.w.store, {"sms": ReportedAtOnce()})
    assert await send(twilio.w, dispatcher.senders["sms"], message) == "delivered"
    record = await delivery(twilio.w, message)
    assert (record["status"], record["provider_id"]) == ("delivered", twilio.api.sids[0])
    assert await twilio.w.store.redis.zcard(KEYS.retries) == 0  # no lease left to reconcile
    assert await twilio.reported(message) == [("delivered", "")]


async def test_an_unsubscribed_recipient_reported_by_twilio_is_suppressed(twilio):
    _message, sid = await twilio.sent()
    await twilio.report(sid, "failed", ErrorCode="21610")
    await twilio.report(sid, "failed", ErrorCode="21610")
    assert await optout.is_suppressed(twilio.w.store, "acme", CUSTOMER)
    [opted_out] = await twilio.w.events(events.OptedOut)
    assert (opted_out.address, opted_out.provider_id) == (CUSTOMER, sid)


def test_sms_reports_go_through_the_one_delivery_status_script() -> None:
    # one script applies every channel's reports (router/lua/delivery_status.lua): an SMS-only
    # copy of it drifted (it kept a settled message on the retry schedule)
    assert "sms_status" not in scripts.NAMES and "delivery_status" in scripts.NAMES
    assert not resources.files("router").joinpath("lua", "sms_status.lua").is_file()


async def test_a_report_settles_a_message_waiting_on_the_retry_schedule(twilio):
    message, sid = await twilio.sent()
    await twilio.w.store.redis.zadd(KEYS.retries, {message.id: 1})  # a lease watchdog's entry
    assert (await twilio.report(sid, "delivered")).status == 200
    assert await twilio.w.store.redis.zscore(KEYS.retries, message.id) is None
