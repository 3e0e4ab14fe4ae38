"""Fax replies out, and the gateways' reports back: the dispatcher sends a reply through
FaxSender to a real aiosmtpd relay on a free port; the gateway's confirmation or
failure mail comes back through a real SMTP conversation with the `smtp` process."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pypdf
import pytest

from channels.email import threads
from channels.fax.outbound import FaxSender
from channels.sandbox import outbox
from router import events
from router.attachments import AttachmentStore
from router.keys import Keys
from router.settings import Settings
from router.store import text
from tests.channels.test_email_delivery import RelaySink, start_sink
from tests.channels.test_email_status import dsn
from tests.channels.test_fax_inbound import TENANTS, FaxServer, faxgate_mail, serve, tiff_of
from tests.factories import World, outbound, world
from workers.dispatch import Dispatcher

REPLY = "Dear customer,\n\nyour meter reading of 12345 kWh is now on your account. Grüße, Zoë"


@dataclass
class Office:
    """The world: the store, the relay, the dispatcher with FaxSender, the inbound SMTP server."""

    world: World
    relay: RelaySink
    dispatcher: Dispatcher
    gateway: FaxServer

    async def reply(self, to: str = "+15551234567", **fields) -> tuple[events.OutboundMessage, str]:
        message = outbound(channel="fax", to=to, body=REPLY, conversation="conv-1", **fields)
        status = await self.dispatcher.deliver(message, events.encode(message))
        return message, status

    async def record(self, message: events.OutboundMessage) -> dict[str, str]:
        raw = await self.world.store.redis.hgetall(Keys("acme").delivery(message.id))
        return {text(k): text(v) for k, v in raw.items() if k != b"payload"}  # the payload is MessagePack

    async def report(self, subject: str, body: str, **headers: str) -> tuple[int, str]:
        """The gateway writes back about a fax, over SMTP."""
        mail = EmailMessage()
        mail["From"] = "eFax <message@efax.example>"
        mail["To"] = "fax@acme.example"
        mail["Subject"] = subject
        for name, value in headers.items():
            mail[name.replace("_", "-")] = value
        mail.set_content(body)
        return await self.gateway.send(mail)


async def open_office(
    tmp_path: Path, *, relay: bool = True, **smtp_settings: object
) -> tuple[Office, list[asyncio.Server]]:
    the_world = await world(TENANTS)
    sink, relay_server = await start_sink()
    settings = Settings(
        smtp_relay_host="127.0.0.1" if relay else "",
        smtp_relay_port=sink.port,
        smtp_relay_tls="none",
        attachment_dir=str(tmp_path / "att"),
    )
    sender = FaxSender(the_world.store, the_world.deployment, settings)
    gateway, smtp_server = await serve(the_world, tmp_path, **smtp_settings)
    return Office(the_world, sink, Dispatcher(the_world.store, {"fax": sender}), gateway), [relay_server, smtp_server]


@pytest.fixture
async def office(tmp_path: Path) -> AsyncIterator[Office]:
    the_office, servers = await open_office(tmp_path)
    try:
        yield the_office
    finally:
        for server in servers:
            server.close()
        await the_office.world.store.close()


async def test_a_reply_is_mailed_as_a_pdf_to_the_gateways_email_to_fax_address(office: Office) -> None:
    message, status = await office.reply(subject="Your meter")
    assert status == "sent"
    [got] = office.relay.received
    mail = got.message
    assert (got.mail_from, got.rcpt_tos) == ("fax@acme.example", ["15551234567@send.efax.example"])
    assert (mail["To"], mail["From"], mail["Subject"]) == (
        "15551234567@send.efax.example",
        "Acme Energy <fax@acme.example>",
        "Your meter",
    )
    [pdf] = [part for part in mail.iter_attachments() if part.get_content_type() == "application/pdf"]
    reader = pypdf.PdfReader(io.BytesIO(pdf.get_content()))
    page_text = " ".join(reader.pages[0].extract_text().split())
    assert " ".join(REPLY.split()) in page_text and "Acme Energy" in page_text
    record = await office.record(message)
    assert record["provider_id"] == f"fax.{message.id}@acme.example" == mail["Message-ID"].strip("<>")
    assert (record["fax_gateway"], record["fax_pages"]) == ("efax", "1")


async def test_a_reply_goes_back_through_the_gateway_the_fax_came_by(office: Office) -> None:
    code, _ = await office.gateway.send(faxgate_mail(sender="020 7946 0018", document=tiff_of(1), pages=1))
    assert code == 250
    await office.reply(to="+442079460018")
    [got] = office.relay.received
    mail = got.message
    assert mail["To"] == "02079460018@out.faxgate.example"  # this gateway dials national numbers


async def test_the_gateways_confirmation_marks_the_fax_delivered_once(office: Office) -> None:
    message, _ = await office.reply()
    ref = office.relay.received[0].message["Message-ID"]
    for _ in range(2):  # the confirmation, and the same confirmation again
        code, _ = await office.report(
            "Your fax to 15551234567 was sent successfully", "1 page sent.", In_Reply_To=ref, Message_ID="<ok1@efax>"
        )
        assert code == 250
    assert (await office.record(message))["status"] == "delivered"
    reports = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "delivered"]
    assert [(e.channel, e.message, e.conversation, e.provider_id) for e in reports] == [
        ("fax", message.id, "conv-1", ref.strip("<>"))
    ]
    assert await office.gateway.contacts() == []  # a report is no conversation


async def test_the_gateways_failure_mail_marks_the_fax_failed_with_its_reason(office: Office) -> None:
    message, _ = await office.reply()
    ref = office.relay.received[0].message["Message-ID"]
    code, _ = await office.report(
        "Fax to 15551234567 failed: the line was busy after 3 attempts",
        f"Your fax could not be delivered.\n\n> Message-ID: {ref}\n> To: 15551234567@send.efax.example",
    )
    assert code == 250
    record = await office.record(message)
    assert (record["status"], record["error"]) == ("failed", "the line was busy after 3 attempts")
    [failed] = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "failed"]
    assert (failed.channel, failed.message, failed.error) == ("fax", message.id, "the line was busy after 3 attempts")


async def test_a_late_confirmation_does_not_undo_a_failure(office: Office) -> None:
    message, _ = await office.reply()
    ref = office.relay.received[0].message["Message-ID"]
    await office.report("Fax to 15551234567 failed: no answer", "", In_Reply_To=ref)
    await office.report("Your fax to 15551234567 was sent successfully", "", In_Reply_To=ref)
    assert (await office.record(message))["status"] == "failed"


async def test_a_late_failure_does_not_undo_a_confirmation(office: Office) -> None:
    message, _ = await office.reply()
    ref = office.relay.received[0].message["Message-ID"]
    await office.report("Your fax to 15551234567 was sent successfully", "", In_Reply_To=ref)
    await office.report("Fax to 15551234567 failed: no answer", "", In_Reply_To=ref, Message_ID="<late@efax>")
    assert (await office.record(message))["status"] == "delivered"


async def test_a_gateway_report_quoting_one_of_our_emails_does_not_settle_that_email(office: Office) -> None:
    # anyone can write "from" a gateway's domain; our emails' Message-IDs reach every customer
    store = office.world.store
    email = outbound(channel="email", to="jane@example.com", body="Hello", conversation="conv-9")
    await threads.remember_sent(store, "acme", "conv-9", f"{email.id.lower()}@acme.example", email.id)
    await store.redis.hset(Keys("acme").delivery(email.id), mapping={"status": "sent", "attempts": 1})
    code, _ = await office.report(
        "Fax to 15551234567 failed: no answer", "", In_Reply_To=f"<{email.id.lower()}@acme.example>"
    )
    assert code == 250
    assert (await office.record(email))["status"] == "sent"
    assert await office.world.events(events.DeliveryStatus) == []


async def test_a_report_on_no_fax_of_ours_is_accepted_and_changes_nothing(office: Office) -> None:
    code, _ = await office.report("Your fax to 15551234567 was sent successfully", "", In_Reply_To="<other@x>")
    assert code == 250
    assert await office.world.events(events.DeliveryStatus) == []
    assert await office.gateway.contacts() == []


async def test_a_relay_refusal_records_the_fax_failed(office: Office) -> None:
    office.relay.answers["rcpt"] = "550 5.1.1 no such fax gateway user"
    message, status = await office.reply()
    assert status == "failed"
    assert "550" in (await office.record(message))["error"]


async def test_without_a_relay_the_fax_and_its_pdf_wait_in_the_sandbox_outbox(tmp_path: Path) -> None:
    the_office, servers = await open_office(tmp_path, relay=False)
    try:
        message, status = await the_office.reply()
        assert status == "sent" and the_office.relay.received == []
        [(_entry, provider_id, kept)] = await outbox(the_office.world.store, "acme")
        assert provider_id == f"sandbox-{message.id}"
        [pdf] = kept.attachments
        assert (pdf.content_type, kept.metadata["fax_to"]) == ("application/pdf", "15551234567@send.efax.example")
        data = AttachmentStore(tmp_path / "att").read(pdf.url)
        assert "your meter reading of 12345 kWh" in pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    finally:
        for server in servers:
            server.close()
        await the_office.world.store.close()


async def test_a_number_that_is_no_phone_number_fails_without_mailing_anyone(office: Office) -> None:
    message, status = await office.reply(to="fax-machine")
    assert status == "failed"
    assert "not a fax number" in (await office.record(message))["error"]
    assert office.relay.received == []


def bounce_of(original: EmailMessage) -> bytes:
    """The gateway's mail server returning our fax mail: a DSN with the message inside."""
    returned = original.as_bytes(policy=original.policy.clone(linesep="\r\n"))
    return (
        b"From: Mail Delivery System <MAILER-DAEMON@efax.example>\r\n"
        b"To: fax@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <dsn1@efax.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; efax.example\r\n\r\n"
        b"Final-Recipient: rfc822; 15551234567@send.efax.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + returned + b"\r\n--b1--\r\n"
    )


async def test_the_gateways_bounce_of_our_fax_mail_marks_it_failed(office: Office) -> None:
    message, _ = await office.reply()
    raw = bounce_of(office.relay.received[0].message)
    code, _ = await office.gateway.send_raw(raw, sender="")
    assert code == 250
    record = await office.record(message)
    assert (record["status"], record["error"]) == ("failed", "the gateway bounced the fax mail")
    assert await office.gateway.contacts() == []


async def test_a_send_that_died_before_reaching_the_relay_is_sent_once_on_recovery(office: Office) -> None:
    message = outbound(channel="fax", to="+15551234567", body=REPLY)
    payload, base = events.encode(message), Keys("acme").base
    await office.world.store.scripts.begin_send(keys=[base], args=[message.id, payload, 0])  # then it died
    recovering = Dispatcher(office.world.store, office.dispatcher.senders, lease_ms=0)
    assert await recovering.deliver(message, payload) == "sent"
    assert len(office.relay.received) == 1


async def test_a_send_that_died_waiting_for_the_relay_is_unknown_and_never_resent(office: Office) -> None:
    message = outbound(channel="fax", to="+15551234567", body=REPLY)
    payload, base = events.encode(message), Keys("acme").base
    await office.world.store.scripts.begin_send(keys=[base], args=[message.id, payload, 0])
    await office.world.store.scripts.mark_requested(keys=[base], args=[message.id])  # reached for the relay, died
    recovering = Dispatcher(office.world.store, office.dispatcher.senders, lease_ms=0)
    assert await recovering.deliver(message, payload) == "unknown"
    assert office.relay.received == []


async def test_a_gateway_can_name_the_fax_in_its_own_words_with_a_ref_group(office: Office) -> None:
    await office.gateway.send(faxgate_mail(sender="020 7946 0018", document=tiff_of(1), pages=1))
    message, _ = await office.reply(to="+442079460018")
    ref = office.relay.received[0].message["Message-ID"].strip("<>")
    report = EmailMessage()
    report["From"] = "FaxGate <noreply@faxgate.example>"
    report["To"] = "fax@acme.example"
    report["Subject"] = "Fax job report"
    report.set_content(f"Job {ref} failed, number unobtainable")
    assert (await office.gateway.send(report))[0] == 250
    record = await office.record(message)
    assert (record["status"], record["error"]) == ("failed", "number unobtainable")


async def test_mail_from_a_gateway_subdomain_is_the_gateways(office: Office) -> None:
    message, _ = await office.reply()
    report = EmailMessage()
    report["From"] = "eFax <status@mail.efax.example>"
    report["To"] = "fax@acme.example"
    report["Subject"] = "Your fax to 15551234567 was sent successfully"
    report["In-Reply-To"] = office.relay.received[0].message["Message-ID"]
    report.set_content("Done.")
    assert (await office.gateway.send(report))[0] == 250
    assert (await office.record(message))["status"] == "delivered"


async def test_a_subject_with_line_breaks_is_sent_on_one_line_and_adds_no_header(office: Office) -> None:
    _message, status = await office.reply(subject="Your meter\r\nBcc: someone@evil.example")
    assert status == "sent"
    [got] = office.relay.received
    mail = got.message
    assert mail["Subject"] == "Your meter Bcc: someone@evil.example" and mail["Bcc"] is None
    assert (got.mail_from, got.rcpt_tos) == ("fax@acme.example", ["15551234567@send.efax.example"])


async def test_the_relays_bounce_of_a_fax_mail_fails_the_fax_as_a_fax(office: Office) -> None:
    message, _ = await office.reply()
    ref = office.relay.received[0].message["Message-ID"]
    code, _ = await office.gateway.send_raw(dsn(ref, to="fax@acme.example"), sender="")
    assert code == 250
    assert (await office.record(message))["status"] == "failed"
    [failed] = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "failed"]
    assert (failed.channel, failed.message, failed.conversation) == ("fax", message.id, "conv-1")
    assert await office.gateway.contacts() == []


async def test_reports_and_bounces_from_outside_our_mail_servers_settle_no_fax(tmp_path: Path, caplog) -> None:
    # the tests' SMTP client (127.0.0.1) is then neither the gateway nor our MX or relay
    office, servers = await open_office(tmp_path, smtp_trusted_networks=["192.0.2.0/24"])
    try:
        message, _ = await office.reply()
        ref = office.relay.received[0].message["Message-ID"]
        code, _ = await office.report("Fax to 15551234567 failed: no answer", "", In_Reply_To=ref)
        assert code == 250
        assert (await office.gateway.send_raw(bounce_of(office.relay.received[0].message), sender=""))[0] == 250
        assert (await office.gateway.send_raw(dsn(ref, to="fax@acme.example"), sender=""))[0] == 250
        assert (await office.record(message))["status"] == "sent"
        assert [e.status for e in await office.world.events(events.DeliveryStatus)] == ["sent"]
        assert "not one of our mail servers" in caplog.text
    finally:
        for server in servers:
            server.close()
        await office.world.store.close()
