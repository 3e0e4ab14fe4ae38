"""Bounces: a delivery status notification that comes back to the `smtp` process over
real SMTP marks the message it returns as failed, emits the delivery event, and
never opens a conversation."""

from __future__ import annotations

import logging
from pathlib import Path

from router import conversations, events
from router.keys import Keys
from tests.channels.test_email_outbound import Office, office, open_office

__all__ = ["office"]  # the fixture, shared with the outbound tests


def dsn(
    returned_id: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    style: str = "headers",
    report_id: str = "<dsn-1@mx.example.net>",
    to: str = "help@acme.example",
) -> bytes:
    """A bounce as MTAs send them: Postfix returns the headers (text/rfc822-headers),
    Exchange the whole message (message/rfc822); old mailers send multipart/mixed."""
    returned = (
        f"From: Acme Energy <help@acme.example>\r\nTo: gone@example.com\r\nSubject: Re: Invoice\r\n"
        f"Message-ID: {returned_id}\r\n"
    )
    kind = "text/rfc822-headers" if style == "headers" else "message/rfc822"
    body = returned + ("" if style == "headers" else "\r\nFixed it.\r\n")
    outer = "multipart/mixed" if style == "legacy" else "multipart/report; report-type=delivery-status"
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {report_id}\r\nAuto-Submitted: auto-replied\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: {outer}; boundary="R"\r\n\r\n'
        f"--R\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be"
        f" delivered.\r\n"
        f"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; gone@example.com\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <gone@example.com>: Recipient address rejected: User unknown\r\n"
        f"--R\r\nContent-Type: {kind}\r\n\r\n{body}"
        f"--R--\r\n"
    ).encode()


async def sent_reply(office: Office) -> tuple[events.OutboundMessage, str]:
    """An agent's reply the relay accepted; returns it and the Message-ID it left with."""
    conversation = await office.first_conversation()
    reply = await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    assert await office.dispatch() == ["sent"]
    return reply, office.relay.received[0].message["Message-ID"]


async def delivery(office: Office, message: str) -> dict[str, str]:
    record = await office.world.store.redis.hgetall(Keys("acme").delivery(message))
    return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}


async def test_a_bounce_marks_the_reply_failed_with_the_reason_and_opens_nothing(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    assert await office.customer_writes(dsn(message_id), sender="") == 250
    record = await delivery(office, reply.id)
    assert record["status"] == "failed"
    assert "5.1.1" in record["error"] and "User unknown" in record["error"] and "gone@example.com" in record["error"]
    [event] = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "failed"]
    assert (event.channel, event.message, event.conversation) == ("email", reply.id, reply.conversation)
    assert event.provider_id == message_id.strip("<>")
    assert len(await office.contacts()) == 1  # only the customer's first mail
    assert await office.world.store.redis.xlen(Keys("acme").outbound) == 1  # and nothing answered it


async def test_the_same_bounce_delivered_twice_counts_once(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    for _ in range(2):
        assert await office.customer_writes(dsn(message_id), sender="") == 250
    failed = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "failed"]
    assert [e.message for e in failed] == [reply.id]


async def test_a_bounce_returning_the_whole_message_is_matched(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    assert await office.customer_writes(dsn(message_id, style="message"), sender="") == 250
    assert (await delivery(office, reply.id))["status"] == "failed"


async def test_an_old_mailer_s_bounce_without_multipart_report_is_recognised(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    assert await office.customer_writes(dsn(message_id, style="legacy"), sender="") == 250
    assert (await delivery(office, reply.id))["status"] == "failed"
    assert len(await office.contacts()) == 1


async def test_a_delay_notice_changes_nothing(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    assert await office.customer_writes(dsn(message_id, action="delayed", status="4.4.1"), sender="") == 250
    assert (await delivery(office, reply.id))["status"] == "sent"


async def test_a_bounce_matching_nothing_of_ours_is_logged_and_dropped(office: Office, caplog) -> None:
    caplog.set_level(logging.INFO, logger="channels.email.inbound")
    reply, _ = await sent_reply(office)
    assert await office.customer_writes(dsn("<someone-else@example.org>"), sender="") == 250
    assert "matches no message of ours" in caplog.text and "someone-else@example.org" in caplog.text
    assert (await delivery(office, reply.id))["status"] == "sent"
    assert len(await office.contacts()) == 1


async def test_a_bounce_sent_to_another_tenant_cannot_fail_our_message(office: Office) -> None:
    reply, message_id = await sent_reply(office)
    assert await office.customer_writes(dsn(message_id, to="care@globex.example"), sender="") == 250
    assert (await delivery(office, reply.id))["status"] == "sent"
    assert await office.contacts("globex") == []


async def test_the_first_report_that_settles_a_reply_is_final(office: Office) -> None:
    delivered, delivered_id = await sent_reply(office)
    assert await office.customer_writes(dsn(delivered_id, action="delivered", status="2.0.0"), sender="") == 250
    assert (await delivery(office, delivered.id))["status"] == "delivered"
    late = dsn(delivered_id, report_id="<dsn-2@mx.example.net>")  # a late failure report
    assert await office.customer_writes(late, sender="") == 250
    assert (await delivery(office, delivered.id))["status"] == "delivered"

    bounced = await conversations.send_reply(office.world.store, "acme", delivered.conversation, "amy", "And this.")
    assert await office.dispatch() == ["delivered", "sent"]  # the first is not sent again
    [_, second] = office.relay.received
    bounced_id = second.message["Message-ID"]
    assert await office.customer_writes(dsn(bounced_id, report_id="<dsn-3@mx.example.net>"), sender="") == 250
    late = dsn(bounced_id, action="delivered", status="2.0.0", report_id="<dsn-4@mx.example.net>")
    assert await office.customer_writes(late, sender="") == 250
    assert (await delivery(office, bounced.id))["status"] == "failed"
    statuses = [(e.message, e.status) for e in await office.world.events(events.DeliveryStatus)]
    assert [s for m, s in statuses if m == delivered.id] == ["sent", "delivered"]
    assert [s for m, s in statuses if m == bounced.id] == ["sent", "failed"]


async def test_a_bounce_not_handed_over_by_our_mx_or_relay_marks_nothing(tmp_path: Path, caplog) -> None:
    # anyone who got our mail knows its Message-ID; only our own mail servers' DSNs count
    office, servers = await open_office(tmp_path, smtp_trusted_networks=["192.0.2.0/24", "2001:db8::/32"])
    try:
        reply, message_id = await sent_reply(office)
        assert await office.customer_writes(dsn(message_id), sender="") == 250
        assert (await delivery(office, reply.id))["status"] == "sent"
        assert "not one of our mail servers" in caplog.text
        assert len(await office.contacts()) == 1  # and it opened nothing either
    finally:
        for server in servers:
            server.close()
        await office.world.store.close()
