"""Outbound email and threading, end to end over real SMTP: the customer writes to the
`smtp` process (smtplib as the client), routing opens the conversation, an agent
replies, the dispatcher sends it through EmailSender to a local relay sink
(aiosmtpd), and the customer's answer comes back into the same conversation."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path

import jinja2
import pytest

from channels.email.compose import list_headers
from channels.email.outbound import EmailSender
from channels.sandbox import outbox
from ops.redis_server import free_port
from router import conversations, events
from router.attachments import AttachmentStore
from router.errors import ConfigError
from router.keys import Keys
from router.settings import Settings
from router.templating import pages
from tests.channels.test_email_delivery import RelaySink, start_sink
from tests.channels.test_email_inbound import mail as customer_mail
from tests.factories import World, deployment, route_inbound, world
from workers import smtp
from workers.dispatch import Dispatcher

TENANTS = """
[[tenants]]
id = "acme"
name = "Acme Energy"
brand_color = "#c2410c"
entry = { default = "support" }
email = { addresses = ["help@acme.example"], domains = ["acme.example"] }

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
name = "Amy Pond"

[[tenants]]
id = "globex"
name = "Globex"
email = { addresses = ["care@globex.example"] }

[[tenants.queues]]
id = "sales"
"""


@dataclass
class Office:
    """The contact centre (smtp server, routing, dispatcher) and the relay it sends through."""

    world: World
    port: int
    relay: RelaySink
    sender: EmailSender
    attachments: AttachmentStore

    async def customer_writes(self, message: EmailMessage | bytes, *, sender: str | None = None) -> int:
        """A mail server delivers to ours, to the To address, from the From address unless a
        return path is given ("" is the null one); returns the DATA (or refusing RCPT) code."""
        if isinstance(message, bytes):
            data, message = message, BytesParser(policy=policy.default).parsebytes(message, headersonly=True)
        else:
            data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        to = parseaddr(str(message["To"]))[1]
        sender = parseaddr(str(message["From"]))[1] if sender is None else sender

        def transaction() -> int:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.ehlo("mx.example.com")
                client.mail(sender)
                code, _ = client.rcpt(to)
                return code if code != 250 else client.data(data)[0]

        return await asyncio.to_thread(transaction)

    async def route(self, tenant: str = "acme") -> dict[str, str]:
        """Route what arrived; returns contact id -> conversation."""
        await route_inbound(self.world.store, self.world.deployment, tenant)
        return {e.message: e.conversation for e in await self.world.events(events.MessageAdded, tenant=tenant)}

    async def dispatch(self, tenant: str = "acme") -> list[str]:
        """The dispatcher sends everything on the outbound stream; returns each message's status."""
        rows = await self.world.store.redis.xrange(Keys(tenant).outbound)
        dispatcher = Dispatcher(self.world.store, {"email": self.sender})
        return [await dispatcher.deliver(events.decode_outbound(f[b"e"]), f[b"e"]) for _id, f in rows]

    async def dispatcher_sends(self, message: events.OutboundMessage) -> str:
        return await Dispatcher(self.world.store, {"email": self.sender}).deliver(message, events.encode(message))

    async def contacts(self, tenant: str = "acme") -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys(tenant).inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]

    async def first_conversation(self) -> str:
        assert await self.customer_writes(customer_mail(Message_ID="<first@example.com>")) == 250
        [conversation] = set((await self.route()).values())
        return conversation


async def open_office(tmp_path: Path, **settings: object) -> tuple[Office, list]:
    the_world = await world(TENANTS)
    relay, relay_server = await start_sink()
    config = Settings(
        smtp_port=free_port(),
        attachment_dir=str(tmp_path / "att"),
        smtp_relay_host="127.0.0.1",
        smtp_relay_port=relay.port,
        smtp_relay_tls="none",
        **settings,
    )
    server = await smtp.start(the_world.store, the_world.deployment, config)
    sender = EmailSender(the_world.store, the_world.deployment, config, timeout_s=2.0)
    office = Office(the_world, config.smtp_port, relay, sender, AttachmentStore(config.attachment_dir))
    return office, [server, relay_server]


@pytest.fixture
async def office(tmp_path: Path) -> AsyncIterator[Office]:
    the_office, servers = await open_office(tmp_path)
    try:
        yield the_office
    finally:
        for server in servers:
            server.close()
        await the_office.world.store.close()


def part_text(mail: EmailMessage, subtype: str) -> str:
    return mail.get_body((subtype,)).get_content().replace("\r\n", "\n")


def token_of(subject: str) -> str:
    return re.search(r"\[#(c-[a-z2-7]{10})\]", subject).group(1)


async def test_an_agent_reply_reaches_the_customer_threaded_under_their_mail(office: Office) -> None:
    conversation = await office.first_conversation()
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.\n\nSorry <b>again</b>.")
    assert await office.dispatch() == ["sent"]

    [got] = office.relay.received
    mail = got.message
    token = token_of(mail["Subject"])
    assert (got.mail_from, got.rcpt_tos) == ("help@acme.example", ["jane@example.com"])
    assert mail["From"] == "Acme Energy <help@acme.example>" and mail["To"] == "jane@example.com"
    assert mail["Subject"] == f"Re: Invoice [#{token}]"
    assert (mail["In-Reply-To"], mail["References"]) == ("<first@example.com>", "<first@example.com>")
    assert mail["Reply-To"] == f"help+{token}@acme.example"
    assert re.fullmatch(r"<[0-9a-z]{26}@acme\.example>", mail["Message-ID"])
    assert "Auto-Submitted" not in mail
    text = part_text(mail, "plain")
    html = part_text(mail, "html")
    assert "Fixed it.\n\nSorry <b>again</b>." in text and "Amy Pond" in text
    assert "Sorry &lt;b&gt;again&lt;/b&gt;." in html and "#c2410c" in html  # escaped, branded
    status = await office.world.store.redis.hget(Keys("acme").delivery(await _last_reply(office)), "provider_id")
    assert f"<{status.decode()}>" == mail["Message-ID"]


async def _last_reply(office: Office) -> str:
    [(_id, fields)] = await office.world.store.redis.xrange(Keys("acme").outbound)
    return events.decode_outbound(fields[b"e"]).id


async def test_the_customer_s_answer_to_our_reply_joins_the_conversation(office: Office) -> None:
    conversation = await office.first_conversation()
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    await office.dispatch()
    ours = office.relay.received[0].message
    answer = customer_mail(
        "Thanks!", subject=f"Re: {ours['Subject']}", Message_ID="<thanks@example.com>",
        In_Reply_To=ours["Message-ID"], References=f"{ours['References']} {ours['Message-ID']}",
    )  # fmt: skip
    assert await office.customer_writes(answer) == 250
    routed = await office.route()
    assert set(routed.values()) == {conversation}
    second = await conversations.send_reply(office.world.store, "acme", conversation, "amy", "You're welcome.")
    assert second.to == "jane@example.com"
    await office.dispatch()
    follow_up = office.relay.received[1].message
    assert follow_up["In-Reply-To"] == "<thanks@example.com>"
    assert follow_up["References"] == f"<first@example.com> {ours['Message-ID']} <thanks@example.com>"
    assert follow_up["Subject"] == ours["Subject"]  # "Re: " once, the same token


async def test_someone_on_cc_who_replies_joins_the_thread_but_replies_still_go_to_the_customer(
    office: Office,
) -> None:
    # the case: Jane copies her colleague; he answers our reply into the thread
    first = customer_mail("What is my balance?", Cc="Bob Lee <bob@corp.example>", Message_ID="<first@example.com>")
    assert await office.customer_writes(first) == 250
    [conversation] = set((await office.route()).values())
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Which account?")
    await office.dispatch()
    ours = office.relay.received[0].message
    bob = customer_mail(
        "Account 42, send it to me", From="Bob Lee <bob@corp.example>", subject=f"Re: {ours['Subject']}",
        Message_ID="<bob@corp.example>", In_Reply_To=ours["Message-ID"], References=ours["Message-ID"],
    )  # fmt: skip
    assert await office.customer_writes(bob) == 250
    assert set((await office.route()).values()) == {conversation}  # he is in the conversation
    record = await office.world.conversation(conversation)
    assert (record["last_channel"], record["last_address"]) == ("email", "jane@example.com")

    balance = await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Your balance is 1,204.")
    await office.dispatch()
    assert balance.to == "jane@example.com" and balance.cc == ()
    assert office.relay.received[1].rcpt_tos == ["jane@example.com"]
    assert "Cc" not in office.relay.received[1].message

    # copying him is the agent's explicit choice, and goes as a Cc header
    await conversations.send_reply(
        office.world.store, "acme", conversation, "amy", "Bob, Jane has the figures.", cc=("bob@corp.example",)
    )
    await office.dispatch()
    copied = office.relay.received[2]
    assert copied.rcpt_tos == ["jane@example.com", "bob@corp.example"]
    assert (copied.message["To"], copied.message["Cc"]) == ("jane@example.com", "bob@corp.example")
    assert copied.message["In-Reply-To"] == "<bob@corp.example>"


async def test_a_reply_without_threading_headers_joins_by_the_reply_address(office: Office) -> None:
    conversation = await office.first_conversation()
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    await office.dispatch()
    reply_to = office.relay.received[0].message["Reply-To"]
    # a client that keeps neither In-Reply-To nor the subject, from another address
    assert (
        await office.customer_writes(customer_mail("Still wrong", From="j@example.net", To=reply_to, subject="hi"))
        == 250
    )
    [_first, second] = await office.contacts()
    assert second.to == "help@acme.example"  # the tenant's address, without the token
    assert set((await office.route()).values()) == {conversation}


async def test_a_reply_with_only_the_subject_token_joins_its_conversation(office: Office) -> None:
    conversation = await office.first_conversation()
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    await office.dispatch()
    subject = office.relay.received[0].message["Subject"]
    assert (
        await office.customer_writes(customer_mail("Me again", From="j@example.net", subject=f"AW: {subject}")) == 250
    )
    assert set((await office.route()).values()) == {conversation}


async def test_a_token_never_leads_into_another_tenant_s_conversation(office: Office) -> None:
    await office.first_conversation()
    [(_id, fields)] = await office.world.store.redis.xrange(Keys("acme").events, count=1)
    conversation = events.decode_state(fields[b"e"]).conversation
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    await office.dispatch()
    ours = office.relay.received[0].message
    token = token_of(ours["Subject"])
    # someone writes to globex with acme's token, in the subject, the address and the headers
    forged = customer_mail(
        "Let me in", From="mallory@example.com", To=f"care+{token}@globex.example",
        subject=ours["Subject"], In_Reply_To=ours["Message-ID"],
    )  # fmt: skip
    assert await office.customer_writes(forged) == 250
    globex = set((await office.route("globex")).values())
    assert len(globex) == 1 and conversation not in globex
    acme_log = await conversations.history(office.world.store, "acme", conversation)
    assert [e.kind for e in acme_log] == ["in", "out"]
    # and a made-up token at acme opens a conversation of its own
    guess = customer_mail("Guessing", From="mallory@example.com", subject="Re: x [#c-aaaaaaaaaa]")
    assert await office.customer_writes(guess) == 250
    assert len(set((await office.route()).values())) == 2


async def test_an_automatic_reply_says_so_in_auto_submitted(office: Office) -> None:
    conversation = await office.first_conversation()
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        conversation=conversation, body="We are closed; we will answer tomorrow.", automatic=True,
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "sent"
    mail = office.relay.received[0].message
    assert mail["Auto-Submitted"] == "auto-replied" and mail["In-Reply-To"] == "<first@example.com>"
    assert "sent automatically" in part_text(mail, "plain")
    assert "wrote:" not in part_text(mail, "plain")  # an automatic answer quotes nothing


async def test_an_agent_reply_quotes_the_mail_it_answers(office: Office) -> None:
    first = customer_mail("My invoice is wrong.\n\n<b>Twice</b> this year.", Message_ID="<first@example.com>")
    assert await office.customer_writes(first) == 250
    [conversation] = set((await office.route()).values())
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    await office.dispatch()
    mail = office.relay.received[0].message
    text, html = part_text(mail, "plain"), part_text(mail, "html")
    intro = re.search(r"On \d{1,2} \w{3} \d{4}, at \d\d:\d\d, Jane Doe <jane@example.com> wrote:", text)
    assert intro, text
    assert text.index("Fixed it.") < intro.start()
    assert "\n> My invoice is wrong.\n>\n> <b>Twice</b> this year.\n" in text
    assert "Jane Doe &lt;jane@example.com&gt; wrote:" in html
    assert "My invoice is wrong.<br><br>&lt;b&gt;Twice&lt;/b&gt; this year.</blockquote>" in html  # escaped


async def test_campaign_mail_is_auto_generated_and_carries_stored_attachments(office: Office) -> None:
    ref = await office.attachments.put(b"%PDF-1.4 statement")
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        subject="Your March statement", body="Please find your statement attached.", campaign="march", automatic=True,
        attachments=(events.Attachment(url=ref, content_type="application/pdf", filename="statement.pdf"),),
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "sent"
    mail = office.relay.received[0].message
    assert mail["Subject"] == "Your March statement" and mail["Auto-Submitted"] == "auto-generated"
    assert "In-Reply-To" not in mail and "Reply-To" not in mail
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "statement.pdf" and attachment.get_content() == b"%PDF-1.4 statement"


async def test_a_customers_file_name_with_line_breaks_goes_back_on_one_line(office: Office) -> None:
    # the customer's own attachment, sent back: its name came from their mail
    ref = await office.attachments.put(b"%PDF-1.4 form")
    name = "form\r\nBcc: someone@evil.example.pdf"
    form = events.Attachment(url=ref, content_type="application/pdf", filename=name)
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        body="Your form, signed.", attachments=(form,),
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "sent"
    mail = office.relay.received[0].message
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "form Bcc: someone@evil.example.pdf" and mail["Bcc"] is None


async def test_a_missing_attachment_fails_the_message_with_the_reason(office: Office) -> None:
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        body="see attached", attachments=(events.Attachment(url="store:" + "0" * 64, filename="gone.pdf"),),
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "failed"
    record = await office.world.store.redis.hgetall(Keys("acme").delivery(message.id))
    assert b"gone.pdf" in record[b"error"] and b"not in the attachment store" in record[b"error"]
    assert office.relay.received == []


async def test_a_greylisting_relay_gets_the_message_again_later(office: Office) -> None:
    conversation = await office.first_conversation()
    office.relay.answers["rcpt"] = "451 4.7.1 greylisted"
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    assert await office.dispatch() == ["retry"]
    record = await office.world.store.redis.hgetall(Keys("acme").delivery(await _last_reply(office)))
    assert b"451 4.7.1 greylisted" in record[b"error"]
    assert await office.world.store.redis.zcard(Keys("acme").retries) == 1


async def test_a_refusing_relay_fails_the_message_permanently(office: Office) -> None:
    conversation = await office.first_conversation()
    office.relay.answers["rcpt"] = "550 5.1.1 <jane@example.com>: no such user"
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    assert await office.dispatch() == ["failed"]
    [event] = [e for e in await office.world.events(events.DeliveryStatus) if e.status == "failed"]
    assert "550 5.1.1" in event.error and event.channel == "email"


async def test_reconcile_trusts_only_our_record_of_the_relay_s_answer(office: Office) -> None:
    conversation = await office.first_conversation()
    reply = await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    store, keys = office.world.store, Keys("acme")
    await store.scripts.begin_send(keys=[keys.base], args=[reply.id, events.encode(reply), 60_000])
    assert await office.sender.reconcile(reply) == ("not_sent", "")  # died before calling the relay
    await store.scripts.mark_requested(keys=[keys.base], args=[reply.id])
    assert await office.sender.reconcile(reply) == ("unknown", "")  # died waiting for the relay
    await store.redis.hset(keys.delivery(reply.id), "provider_id", "x@acme.example")
    assert await office.sender.reconcile(reply) == ("sent", "x@acme.example")


async def test_without_a_relay_the_mail_goes_to_the_sandbox_outbox(office: Office) -> None:
    conversation = await office.first_conversation()
    office.sender.settings = Settings()  # no SMTP_RELAY_HOST
    reply = await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed it.")
    assert await office.dispatch() == ["sent"]
    [(_entry, provider_id, kept)] = await outbox(office.world.store, "acme")
    assert provider_id == f"sandbox-{reply.id}" and office.relay.received == []
    assert kept.subject.startswith("Re: Invoice [#c-") and kept.metadata["in_reply_to"] == "first@example.com"
    assert kept.sender == "help@acme.example"


async def test_a_tenant_can_brand_its_mail_with_its_own_template(office: Office, tmp_path: Path, monkeypatch) -> None:
    own = tmp_path / "templates"
    (own / "email" / "acme").mkdir(parents=True)
    (own / "email" / "acme" / "reply.html").write_text("<p class=acme>{{ body }}</p>", "utf-8")
    env = pages()
    monkeypatch.setattr(env, "loader", jinja2.ChoiceLoader([jinja2.FileSystemLoader(own), env.loader]))
    conversation = await office.first_conversation()
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "Fixed <it>.")
    await office.dispatch()
    mail = office.relay.received[0].message
    assert part_text(mail, "html").strip() == "<p class=acme>Fixed &lt;it&gt;.</p>"
    assert "Fixed <it>." in part_text(mail, "plain")  # the shared text template


async def test_mail_leaves_from_the_address_the_customer_wrote_to_or_the_configured_one(tmp_path: Path) -> None:
    the_world = await world(
        """
        [[tenants]]
        id = "acme"
        name = "Acme Energy"
        [tenants.email]
        addresses = ["help+support@acme.example"]
        domains = ["acme.example"]
        from_address = "care@acme.example"
        from_name = "Acme Care"
        [[tenants.queues]]
        id = "support"
        """
    )
    relay, server = await start_sink()
    try:
        settings = Settings(smtp_relay_host="127.0.0.1", smtp_relay_port=relay.port, smtp_relay_tls="none")
        sender = EmailSender(the_world.store, the_world.deployment, settings)
        for wrote_to in ("billing@acme.example", "help+support@acme.example", "", "someone@globex.example"):
            message = events.OutboundMessage(
                id=events.new_id(), tenant="acme", channel="email", to="jane@example.com",
                occurred_at=events.now_ms(), sender=wrote_to, body="Hello",
            )  # fmt: skip
            await sender.send(message)
        assert [r.message["From"] for r in relay.received] == [
            "Acme Care <billing@acme.example>",
            "Acme Care <help+support@acme.example>",  # a configured +tag is an address of its own
            "Acme Care <care@acme.example>",
            "Acme Care <care@acme.example>",  # never another tenant's address
        ]
    finally:
        server.close()
        await the_world.store.close()


def test_a_from_address_must_be_one_the_tenant_receives_mail_for() -> None:
    with pytest.raises(ConfigError, match=r"email\.from_address`: 'help@globex\.example' is not one of this tenant's"):
        deployment(
            """
            [[tenants]]
            id = "acme"
            email = { addresses = ["help@acme.example"], from_address = "help@globex.example" }
            [[tenants.queues]]
            id = "support"
            """
        )


async def test_a_plus_address_of_a_configured_address_still_arrives(office: Office) -> None:
    # customers write to help+c-<token>@ even for a token they made up: the mail is taken, just not joined
    code = await office.customer_writes(customer_mail("Hi", To="help+c-aaaaaaaaaa@acme.example"))
    assert code == 250
    [contact] = await office.contacts()
    assert contact.to == "help@acme.example" and contact.thread[0] == "token:c-aaaaaaaaaa"


async def test_bad_input_fails_the_message_with_a_reason_and_sends_nothing(office: Office) -> None:
    for to in ("jane", "jane@example.com\r\nBcc: everyone@example.com", "a@b.example, c@d.example"):
        message = events.OutboundMessage(
            id=events.new_id(), tenant="acme", channel="email", to=to, occurred_at=events.now_ms(), body="hi"
        )
        assert await office.dispatcher_sends(message) == "failed"
        error = await office.world.store.redis.hget(Keys("acme").delivery(message.id), "error")
        assert b"is not an email address" in error
    subject = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        subject="Your bill\r\nBcc: everyone@example.com", body="hi",
    )  # fmt: skip
    assert await office.dispatcher_sends(subject) == "sent"
    [got] = office.relay.received
    assert got.rcpt_tos == ["jane@example.com"] and got.message["Subject"] == "Your bill Bcc: everyone@example.com"


async def test_a_tenant_template_that_does_not_render_fails_the_message(office: Office, tmp_path, monkeypatch) -> None:
    own = tmp_path / "broken"
    (own / "email" / "acme").mkdir(parents=True)
    (own / "email" / "acme" / "reply.html").write_text("<p>{{ no_such_field }}</p>", "utf-8")
    env = pages()
    monkeypatch.setattr(env, "loader", jinja2.ChoiceLoader([jinja2.FileSystemLoader(own), env.loader]))
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(), body="x"
    )
    assert await office.dispatcher_sends(message) == "failed"
    error = await office.world.store.redis.hget(Keys("acme").delivery(message.id), "error")
    assert b"no_such_field" in error and office.relay.received == []


def test_a_reply_subject_says_re_once_whatever_the_clients_added() -> None:
    from channels.email.threads import reply_subject

    token = "c-abcdefghij"
    for subject in ("Invoice", "Re: Invoice", "RE: AW: Re[2]: Invoice", "Fwd: Invoice", "Re: Invoice [#c-zzzzzzzzzz]"):
        assert reply_subject(subject, token) == "Re: Invoice [#c-abcdefghij]", subject
    assert reply_subject("", token) == "Re: your message [#c-abcdefghij]"


async def test_a_reply_in_another_script_arrives_intact_over_a_7bit_path(office: Office) -> None:
    from tests.channels.test_email_mime import legacy

    assert (
        await office.customer_writes(legacy("我的账单有问题", "gb2312", "账单问题"), sender="customer@example.cn")
        == 250
    )
    [conversation] = set((await office.route()).values())
    await conversations.send_reply(office.world.store, "acme", conversation, "amy", "您好，我们已经更正了账单。")  # noqa: RUF001
    assert await office.dispatch() == ["sent"]
    [got] = office.relay.received
    assert got.rcpt_tos == ["customer@example.cn"]
    assert got.message["Subject"].startswith("Re: 账单问题 [#c-")
    assert "您好，我们已经更正了账单。" in part_text(got.message, "plain")  # noqa: RUF001
    assert "您好" in part_text(got.message, "html")


async def test_campaign_mail_carries_one_click_unsubscribe_headers_unencoded(office: Office) -> None:
    # as workers.campaigns puts them on the message: a signed link well past 78 characters
    link = "https://cc.example/unsubscribe/acme/" + "t0k3n" * 30
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        subject="Our spring offer", body="Save 10% this spring.", campaign="spring", automatic=True,
        metadata={
            "header:List-Unsubscribe": f"<{link}>, <mailto:unsubscribe@acme.example>",
            "header:List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "header:List-Id": "Acme offers <offers.acme.example>",
            "header:Bcc": "someone@evil.example",  # not on the allow-list
        },
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "sent"
    [received] = office.relay.received
    mail = received.message
    assert received.rcpt_tos == ["jane@example.com"] and mail["Bcc"] is None
    assert mail["List-Unsubscribe"] == f"<{link}>, <mailto:unsubscribe@acme.example>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Id"] == "Acme offers <offers.acme.example>"
    raw = dict(mail.raw_items())["List-Unsubscribe"]
    assert "=?" not in raw and f"<{link}>" in raw  # a mail client reads the link as it is


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("List-Unsubscribe", "<https://cc.example/u/1>\r\nBcc: someone@evil.example"),
        ("List-Unsubscribe", "<https://cc.example/u/1>,\r\n <https://cc.example/u/2>"),
        ("List-Unsubscribe", "https://cc.example/u/1"),
        ("List-Unsubscribe", "<javascript:alert(1)>"),
        ("List-Id", "Offers\n <offers.acme.example>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click\r\nBcc: someone@evil.example"),
    ],
)
async def test_a_list_header_that_could_inject_lines_fails_the_message_and_sends_nothing(
    office: Office, name: str, value: str
) -> None:
    metadata = {f"header:{name}": value}
    if name == "List-Unsubscribe-Post":
        metadata["header:List-Unsubscribe"] = "<https://cc.example/u/1>"
    message = events.OutboundMessage(
        id=events.new_id(), tenant="acme", channel="email", to="jane@example.com", occurred_at=events.now_ms(),
        subject="Offer", body="Hello", campaign="spring", automatic=True, metadata=metadata,
    )  # fmt: skip
    assert await office.dispatcher_sends(message) == "failed"
    assert office.relay.received == []


def test_one_click_post_needs_an_https_link_to_post_to() -> None:
    with pytest.raises(ValueError, match="RFC 8058"):
        list_headers(
            {
                "header:List-Unsubscribe": "<mailto:u@acme.example>",
                "header:List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        )
