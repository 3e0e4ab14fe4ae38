"""Inbound email: real SMTP conversations (smtplib as the client) with the `smtp`
process's aiosmtpd server, started in the test on a free port, as a specification."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.email import inbound, mime
from ops.redis_server import free_port
from router import bus, events
from router.attachments import AttachmentStore
from router.errors import ConfigError
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, deployment, route_inbound, world
from workers import smtp

TENANTS = """
[[tenants]]
id = "acme"
entry = { default = "support" }
email = { addresses = ["help@acme.example"], domains = ["acme.example"] }

[[tenants.queues]]
id = "support"

[[tenants]]
id = "globex"
email = { addresses = ["care@globex.example"] }

[[tenants.queues]]
id = "sales"
"""
MAX_BYTES = 64_000
SMTP_POLICY = EmailMessage().policy.clone(linesep="\r\n")


def mail(body: str = "My invoice is wrong.", *, subject: str = "Invoice", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Jane Doe <jane@example.com>")
    msg["To"] = headers.pop("To", "help@acme.example")
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@dataclass
class Mailbox:
    """The server under test, and a client that speaks SMTP to it."""

    world: World
    port: int
    attachments: AttachmentStore

    async def send(
        self, message: EmailMessage | bytes, *, to: str = "help@acme.example", sender: str = "jane@example.com"
    ):
        """One SMTP transaction; returns the code and text of the last reply (RCPT's if refused)."""
        # on the wire every line ends in CRLF (smtplib leaves bytes as they are)
        data = message if isinstance(message, bytes) else message.as_bytes(policy=message.policy.clone(linesep="\r\n"))

        def transaction() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.ehlo("client.example.com")
                client.mail(sender)
                code, text = client.rcpt(to)
                if code != 250:
                    return code, text.decode()
                code, text = client.data(data)
                return code, text.decode()

        return await asyncio.to_thread(transaction)

    async def contacts(self, tenant: str = "acme") -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys(tenant).inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]

    async def route(self, tenant: str = "acme") -> dict[str, str]:
        """Route everything on the inbound stream; returns contact id -> conversation."""
        await route_inbound(self.world.store, self.world.deployment, tenant)
        return {e.message: e.conversation for e in await self.world.events(events.MessageAdded, tenant=tenant)}


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[Mailbox]:
    the_world = await world(TENANTS)
    settings = Settings(
        smtp_port=free_port(),
        smtp_max_bytes=MAX_BYTES,
        attachment_dir=str(tmp_path / "att"),
        attachment_max_bytes=20_000,
    )
    server = await smtp.start(the_world.store, the_world.deployment, settings)
    try:
        yield Mailbox(the_world, settings.smtp_port, AttachmentStore(settings.attachment_dir))
    finally:
        server.close()
        await the_world.store.close()


async def test_mail_for_a_tenant_address_becomes_a_contact_on_its_stream(mailbox: Mailbox) -> None:
    code, text = await mailbox.send(mail(Message_ID="<m1@example.com>"))
    assert code == 250, text
    [contact] = await mailbox.contacts()
    assert (contact.tenant, contact.channel, contact.address, contact.to) == (
        "acme",
        "email",
        "jane@example.com",
        "help@acme.example",
    )
    assert (contact.subject, contact.body.strip(), contact.provider_id) == (
        "Invoice",
        "My invoice is wrong.",
        "m1@example.com",
    )
    assert contact.metadata["from_name"] == "Jane Doe"
    assert contact.name == "Jane Doe"  # what the desk calls her
    assert "auto_submitted" not in contact.metadata
    assert await mailbox.contacts("globex") == []


async def test_the_server_greets_and_answers_ehlo_with_the_configured_name(tmp_path: Path) -> None:
    the_world = await world(TENANTS)
    settings = Settings(smtp_port=free_port(), smtp_hostname="mx.acme.example", attachment_dir=str(tmp_path))
    server = await smtp.start(the_world.store, the_world.deployment, settings)

    def session() -> tuple[bytes, bytes]:
        client = smtplib.SMTP(timeout=10)
        try:
            _code, greeting = client.connect("127.0.0.1", settings.smtp_port)
            return greeting, client.ehlo("client.example.com")[1]
        finally:
            client.close()

    try:
        greeting, ehlo = await asyncio.to_thread(session)
        assert greeting.split()[0] == b"mx.acme.example"
        assert ehlo.splitlines()[0] == b"mx.acme.example"
    finally:
        server.close()
        await the_world.store.close()


async def test_any_address_of_a_tenant_domain_is_accepted(mailbox: Mailbox) -> None:
    code, _ = await mailbox.send(mail(To="billing@acme.example"), to="Billing@ACME.example")
    assert code == 250
    [contact] = await mailbox.contacts()
    assert contact.to == "billing@acme.example"


async def test_a_stranger_recipient_is_refused_so_the_server_is_no_open_relay(mailbox: Mailbox) -> None:
    for stranger in ("someone@gmail.example", "help@acme.example.evil.example", "help@globex.example"):
        code, text = await mailbox.send(mail(To=stranger), to=stranger)
        assert code == 550, (stranger, text)
    assert await mailbox.contacts() == [] and await mailbox.contacts("globex") == []


async def test_an_oversized_message_is_refused_with_552(mailbox: Mailbox) -> None:
    code, _ = await mailbox.send(mail("x" * (MAX_BYTES + 1000)))
    assert code == 552
    assert await mailbox.contacts() == []


async def test_the_size_is_refused_up_front_when_the_client_declares_it(mailbox: Mailbox) -> None:
    def declare() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10) as client:
            client.ehlo()
            return client.mail("jane@example.com", [f"SIZE={MAX_BYTES * 2}"])

    code, _ = await asyncio.to_thread(declare)
    assert code == 552


def sendmail(port: int, data: bytes) -> dict | smtplib.SMTPDataError:
    """smtplib.sendmail as scripts call it: the bytes as they are (bare LFs and all)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        try:
            return client.sendmail("jane@example.com", ["help@acme.example"], data)
        except smtplib.SMTPDataError as refused:
            return refused


async def test_mail_whose_lines_end_in_a_bare_lf_is_taken_in(mailbox: Mailbox) -> None:
    # Python's own idiom: msg.as_bytes() has LF line ends, which smtplib sends unchanged;
    # a 5 KB message of short lines, dot-stuffed by smtplib where a line starts with a dot
    lines = [f"Line {n} of my complaint." for n in range(200)]
    message = mail("\n".join([*lines, ".", ".profile is a file", "Regards"]), Message_ID="<lf@example.com>")
    data = message.as_bytes()
    assert b"\r" not in data and len(data) > 5000
    assert await asyncio.to_thread(sendmail, mailbox.port, data) == {}  # no recipient refused
    [contact] = await mailbox.contacts()
    assert (contact.provider_id, contact.subject) == ("lf@example.com", "Invoice")
    assert contact.body.strip() == "\n".join([*lines, ".", ".profile is a file", "Regards"])


async def test_a_line_longer_than_998_octets_is_refused_with_500(mailbox: Mailbox) -> None:
    # RFC 5321 4.5.3.1.6: 998 octets and the CRLF (aiosmtpd leaves room for one more, a
    # leading dot's stuffing); 4.5.3.1.10: the reply is "500 Line too long"
    for n, ending in enumerate((b"\r\n", b"\n")):
        head = b"From: jane@example.com" + ending + b"To: help@acme.example" + ending
        for length in (998, 1000):
            raw = head + b"Message-ID: <%d.%d@example.com>" % (length, n) + ending + ending
            raw += b"x" * length + ending + b"end" + ending
            outcome = await asyncio.to_thread(sendmail, mailbox.port, raw)
            if length == 998:
                assert outcome == {}, (ending, outcome)
            else:
                assert isinstance(outcome, smtplib.SMTPDataError), (ending, outcome)
                assert outcome.smtp_code == 500 and b"Line too long" in outcome.smtp_error
    assert sorted(c.provider_id for c in await mailbox.contacts()) == ["998.0@example.com", "998.1@example.com"]


async def test_a_lone_dot_beside_a_bare_lf_does_not_end_the_mail(mailbox: Mailbox) -> None:
    """Only CRLF.CRLF ends the mail: a dot on a line of its own next to a bare LF is text,
    so nobody can slip a second message in where another server would not see one."""
    smuggled = b"\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<help@acme.example>\r\nDATA\r\n"
    smuggled += b"From: evil@example.com\r\nSubject: smuggled\r\n\r\nhi\r\n.\n"
    raw = mail("Hello", Message_ID="<carrier@example.com>").as_bytes(policy=SMTP_POLICY) + smuggled

    def transaction() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10) as client:
            client.ehlo()
            client.mail("jane@example.com")
            client.rcpt("help@acme.example")
            client.putcmd("data")
            assert client.getreply()[0] == 354
            client.send(raw + b"\r\n.\r\n")  # unstuffed, as an attacker's client sends it
            return client.getreply()

    code, _ = await asyncio.to_thread(transaction)
    assert code == 250
    [contact] = await mailbox.contacts()
    assert contact.provider_id == "carrier@example.com" and "MAIL FROM:<evil@example.com>" in contact.body


async def test_a_store_failure_answers_451_so_the_sender_retries(mailbox: Mailbox, monkeypatch) -> None:
    async def down(_store, _contact):
        raise RedisConnectionError("store unreachable")

    monkeypatch.setattr(bus, "ingest", down)
    code, _ = await mailbox.send(mail(Message_ID="<retry@example.com>"))
    assert code == 451
    monkeypatch.undo()
    code, _ = await mailbox.send(mail(Message_ID="<retry@example.com>"))  # the sender's retry
    assert code == 250
    assert [c.provider_id for c in await mailbox.contacts()] == ["retry@example.com"]


async def test_an_attachment_store_failure_answers_451(mailbox: Mailbox, monkeypatch) -> None:
    def full(_self, _data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AttachmentStore, "put_sync", full)
    message = mail()
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="bill.pdf")
    code, _ = await mailbox.send(message)
    assert code == 451
    assert await mailbox.contacts() == []


async def test_the_same_message_id_delivered_twice_gives_one_contact(mailbox: Mailbox) -> None:
    message = mail(Message_ID="<twice@example.com>")
    assert (await mailbox.send(message))[0] == 250
    assert (await mailbox.send(message))[0] == 250
    assert len(await mailbox.contacts()) == 1


async def test_mail_without_a_message_id_is_deduplicated_by_its_content(mailbox: Mailbox) -> None:
    raw = b"From: jane@example.com\r\nTo: help@acme.example\r\nSubject: no id\r\n\r\nhello\r\n"
    assert (await mailbox.send(raw))[0] == 250
    assert (await mailbox.send(raw))[0] == 250
    [contact] = await mailbox.contacts()
    assert contact.provider_id.startswith("sha256:") and contact.body.strip() == "hello"


async def test_a_reply_joins_the_conversation_it_answers(mailbox: Mailbox) -> None:
    await mailbox.send(mail("First", Message_ID="<first@example.com>"))
    # the reply comes from another address of the customer's, quoting the first message
    reply = mail(
        "Second",
        subject="Re: Invoice",
        From="jane.work@example.org",
        Message_ID="<second@example.org>",
        In_Reply_To="<first@example.com>",
        References="<first@example.com>",
    )
    assert (await mailbox.send(reply, sender="jane.work@example.org"))[0] == 250
    first, second = await mailbox.contacts()
    assert second.thread == ("first@example.com",)
    conversations = await mailbox.route()
    assert conversations[first.id] == conversations[second.id]


async def test_legacy_charsets_and_encoded_subjects_are_decoded(mailbox: Mailbox) -> None:
    from tests.channels.test_email_mime import legacy

    cases = [
        ("gb2312", "我的账单有问题，请帮忙。", "账单问题"),  # noqa: RUF001 (a Chinese comma)
        ("big5", "我的帳單有問題，請幫忙。", "帳單問題"),  # noqa: RUF001
        ("iso-2022-jp", "請求書について質問があります。", "請求書"),
    ]
    for charset, body, subject in cases:
        assert (await mailbox.send(legacy(body, charset, subject), sender="customer@example.cn"))[0] == 250
    contacts = await mailbox.contacts()
    assert [(c.subject, c.body.strip()) for c in contacts] == [(s, b) for _c, b, s in cases]


async def test_subjects_and_names_in_legacy_charsets_arrive_whole(mailbox: Mailbox) -> None:
    from tests.channels.test_email_mime import encoded_word, headed

    cases = [  # the issue's: 朱\ufffdF基的问题, and half-width kana left as =?ISO-2022-JP?B?...?=
        ("GB2312", "gbk", "朱镕基的问题", "朱先生"),
        ("ISO-2022-JP", "iso2022_jp_ext", "ｾｰﾙのお知らせ", "ﾔﾏﾀﾞ ﾀﾛｳ"),
        ("Big5", "big5hkscs", "佢哋嘅帳單", "陳大文"),
    ]
    for n, (label, codec, subject, name) in enumerate(cases):
        sender = f"{encoded_word(name.encode(codec), label)} <c{n}@example.cn>"
        raw = headed(encoded_word(subject.encode(codec), label), sender).replace(b"<h@", b"<%d@" % n)
        assert (await mailbox.send(raw, sender=f"c{n}@example.cn"))[0] == 250
    assert [(c.subject, c.name) for c in await mailbox.contacts()] == [(s, n) for _l, _c, s, n in cases]


async def test_html_only_mail_arrives_as_text_with_the_html_kept(mailbox: Mailbox) -> None:
    message = mail()
    message.set_content("<p>Hello <b>there</b></p><p>Second line</p>", subtype="html")
    assert (await mailbox.send(message))[0] == 250
    [contact] = await mailbox.contacts()
    assert contact.body == "Hello there\n\nSecond line"
    assert mailbox.attachments.read(contact.metadata["html"]).startswith(b"<p>Hello <b>there</b>")


async def test_attachments_are_stored_by_content_and_referenced_from_the_contact(mailbox: Mailbox) -> None:
    message = mail("Photo attached")
    message.add_attachment(b"\x89PNG meter", maintype="image", subtype="png", filename="meter.png")
    message.add_attachment(b"x" * 30_000, maintype="application", subtype="pdf", filename="huge.pdf")
    assert (await mailbox.send(message))[0] == 250
    [contact] = await mailbox.contacts()
    [attachment] = contact.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == ("meter.png", "image/png", 10)
    assert attachment.url.startswith("store:")
    assert mailbox.attachments.read(attachment.url) == b"\x89PNG meter"
    assert "huge.pdf (30000 bytes)" in contact.metadata["attachments_omitted"]


async def test_at_most_100_attachments_are_kept_and_the_message_says_how_many_were_left_out(
    mailbox: Mailbox,
) -> None:
    message = mail("Logs attached")
    for n in range(300):  # tiny parts: a 287 KB mail of them once made 9,000 files
        message.add_attachment(b"%d" % n, maintype="application", subtype="octet-stream", filename=f"log{n}.txt")
    assert (await mailbox.send(message))[0] == 250
    [contact] = await mailbox.contacts()
    assert [a.filename for a in contact.attachments] == [f"log{n}.txt" for n in range(100)]
    assert contact.body.endswith("[200 more attachments left out: at most 100 a message]")
    assert contact.metadata["attachments_omitted"] == "200 more attachments (at most 100 a message)"


def nested(depth: int) -> bytes:
    """Multipart inside multipart, `depth` levels, a line of text at the bottom."""
    head = b"From: jane@example.com\r\nTo: help@acme.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n" % (i, i) for i in range(depth))
    closing = b"".join(b"--%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nthe bottom\r\n" + closing


async def test_multipart_nested_too_deep_to_read_is_refused_for_good_with_554(mailbox: Mailbox) -> None:
    code, text = await mailbox.send(nested(1000))  # a 451 had the sender retry it for days
    assert code == 554 and "nested too deeply" in text
    assert (await mailbox.send(nested(40)))[0] == 250  # deep, but readable
    [contact] = await mailbox.contacts()
    assert contact.body == "the bottom"


async def test_an_auto_reply_is_flagged_so_it_is_never_answered(mailbox: Mailbox) -> None:
    await mailbox.send(mail("I am out of office", Auto_Submitted="auto-replied"))
    await mailbox.send(mail("newsletter", Precedence="bulk", From="news@example.com"), sender="news@example.com")
    await mailbox.send(mail("plain", From="x@example.com"), sender="")  # a null return path
    await mailbox.send(mail("Meeting", From="y@example.com", X_Auto_Response_Suppress="All"), sender="y@example.com")
    await mailbox.send(mail("Digest", From="z@example.com", List_Id="<news.lists.example.com>"), sender="z@example.com")
    assert [c.metadata.get("auto_submitted") for c in await mailbox.contacts()] == ["1"] * 5


async def test_a_bounce_is_accepted_and_logged_but_opens_no_conversation(mailbox: Mailbox, caplog) -> None:
    from tests.channels.test_email_mime import delivery_report

    caplog.set_level(logging.INFO, logger="channels.email.inbound")
    code, _ = await mailbox.send(delivery_report(), sender="")
    assert code == 250
    assert await mailbox.contacts() == []
    assert "bounce" in caplog.text


async def test_mail_without_any_sender_address_is_refused_with_a_reason(mailbox: Mailbox, caplog) -> None:
    raw = b"Subject: who am I\r\nTo: help@acme.example\r\n\r\nhello\r\n"
    code, text = await mailbox.send(raw, sender="")
    assert code == 550 and "sender" in text
    assert "no sender address" in caplog.text
    assert await mailbox.contacts() == []


async def test_malformed_mail_becomes_a_contact_with_what_could_be_read(mailbox: Mailbox) -> None:
    raw = (
        b"From: jane@example.com\r\nTo: help@acme.example\r\nSubject: =?gb2312?b?broken\r\n"
        b"Content-Type: multipart/mixed; boundary=never-closed\r\n\r\n"
        b"--never-closed\r\nContent-Type: text/plain; charset=gb2312\r\n\r\n\xc4\xe3\xba\xc3 \xff\xff\r\n"
    )
    assert (await mailbox.send(raw))[0] == 250
    [contact] = await mailbox.contacts()
    assert contact.body.startswith("你好")
    assert contact.metadata["defects"]


async def test_one_message_for_two_tenants_reaches_both(mailbox: Mailbox) -> None:
    def transaction() -> dict:
        with smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10) as client:
            return client.sendmail(
                "jane@example.com",
                ["help@acme.example", "care@globex.example", "nobody@else.example"],
                mail().as_string(),
            )

    refused = await asyncio.to_thread(transaction)
    assert list(refused) == ["nobody@else.example"]
    assert len(await mailbox.contacts("acme")) == 1 and len(await mailbox.contacts("globex")) == 1


def test_an_address_or_domain_belongs_to_one_tenant_only() -> None:
    for acme, globex in [
        ('addresses = ["help@acme.example"]', 'addresses = ["HELP@acme.example"]'),
        ('domains = ["acme.example"]', 'domains = ["acme.example"]'),
    ]:
        text = f"""
        [[tenants]]
        id = "acme"
        email = {{ {acme} }}
        [[tenants.queues]]
        id = "support"
        [[tenants]]
        id = "globex"
        email = {{ {globex} }}
        [[tenants.queues]]
        id = "sales"
        """
        with pytest.raises(ConfigError, match=r"tenants\[1\]\.email\.\w+\[0\]`: .* already belongs to acme"):
            deployment(text)
    with pytest.raises(ConfigError, match="is not an email address"):
        deployment('[[tenants]]\nid = "acme"\nemail = { addresses = ["help"] }\n[[tenants.queues]]\nid = "q"\n')


def test_an_own_address_wins_over_another_tenant_domain() -> None:
    config = deployment(
        """
        [[tenants]]
        id = "acme"
        email = { domains = ["shared.example"] }
        [[tenants.queues]]
        id = "support"
        [[tenants]]
        id = "globex"
        email = { addresses = ["globex@shared.example"] }
        [[tenants.queues]]
        id = "sales"
        """
    )
    assert config.tenant_by_email("Globex@Shared.example").id == "globex"
    assert config.tenant_by_email("anyone@shared.example").id == "acme"
    assert config.tenant_by_email("anyone@sub.shared.example") is None


async def test_a_big_message_is_parsed_off_the_event_loop_so_other_sessions_are_answered(
    mailbox: Mailbox, monkeypatch
) -> None:
    monkeypatch.setattr(inbound, "THREAD_PARSE_BYTES", 10_000)
    parsing, release = threading.Event(), threading.Event()
    real_read = mime.read

    def slow_read(raw: bytes) -> mime.Mail:
        if len(raw) >= 10_000:  # the big one: held until the other session was answered
            parsing.set()
            release.wait(10)
        return real_read(raw)

    monkeypatch.setattr(mime, "read", slow_read)
    big = mail("A long letter. " * 2_500, Message_ID="<big@example.com>")

    def smtp_session_during_the_parse() -> dict:
        # from a thread of its own: a blocked event loop would answer nothing
        assert parsing.wait(10), "the big message never reached the parser"
        try:
            small = mail("Just a line.", Message_ID="<small@example.com>").as_bytes()
            with smtplib.SMTP("127.0.0.1", mailbox.port, timeout=3) as client:
                return client.sendmail("joe@example.com", ["help@acme.example"], small)  # refused: none
        finally:
            release.set()

    (big_code, _), small = await asyncio.gather(mailbox.send(big), asyncio.to_thread(smtp_session_during_the_parse))
    assert big_code == 250 and small == {}
    assert {c.provider_id for c in await mailbox.contacts()} == {"big@example.com", "small@example.com"}
