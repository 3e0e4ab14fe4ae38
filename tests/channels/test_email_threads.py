"""Email threads and conversations, over real SMTP sessions with the `smtp` process: a new
thread from a customer opens its own conversation, a reply joins the thread it answers,
and a reply to the customer's closed conversation opens it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.redis_server import free_port
from router import agents, atomic, bus, conversations, customers, events
from router.attachments import AttachmentStore
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_email_inbound import Mailbox, mail
from tests.factories import world
from workers import smtp

TENANTS = """
[[tenants]]
id = "acme"
entry = { default = "support" }
email = { addresses = ["help@acme.example"] }
dispositions = ["resolved"]

[[tenants.queues]]
id = "support"
wrapup_seconds = 0

[[tenants.agents]]
id = "amy"
skills = { support = 1 }
"""


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[Mailbox]:
    the_world = await world(TENANTS)
    settings = Settings(smtp_port=free_port(), attachment_dir=str(tmp_path / "att"))
    server = await smtp.start(the_world.store, the_world.deployment, settings)
    try:
        yield Mailbox(the_world, settings.smtp_port, AttachmentStore(settings.attachment_dir))
    finally:
        server.close()
        await the_world.store.close()


async def conversation_of(mailbox: Mailbox, message_id: str) -> str:
    """The conversation the mail with this Message-ID joined, once routed."""
    routed = await mailbox.route()
    [contact] = [c for c in await mailbox.contacts() if c.provider_id == message_id]
    return routed[contact.id]


async def record(mailbox: Mailbox, conversation: str) -> dict[str, str]:
    return await mailbox.world.conversation(conversation)


async def test_a_new_thread_from_the_same_customer_opens_its_own_conversation(mailbox: Mailbox) -> None:
    assert (await mailbox.send(mail("My invoice is wrong.", Message_ID="<a1@example.com>")))[0] == 250
    first = await conversation_of(mailbox, "a1@example.com")
    new_thread = mail("And my meter is broken.", subject="Meter", Message_ID="<b1@example.com>")
    assert (await mailbox.send(new_thread))[0] == 250
    second = await conversation_of(mailbox, "b1@example.com")
    assert second != first
    assert (await record(mailbox, first))["customer"] == (await record(mailbox, second))["customer"]
    assert (await record(mailbox, first))["state"] != "closed"  # both stay open
    # each reply joins the thread it answers, not the newest conversation
    reply = mail("About the invoice again", subject="Re: Invoice", Message_ID="<a2@example.com>")
    reply["In-Reply-To"] = reply["References"] = "<a1@example.com>"
    assert (await mailbox.send(reply))[0] == 250
    assert await conversation_of(mailbox, "a2@example.com") == first


async def test_a_text_message_still_joins_the_customers_open_conversation(mailbox: Mailbox) -> None:
    """Only mail threads are kept apart: a contact on a channel without threads joins."""
    assert (await mailbox.send(mail("Hello", Message_ID="<a1@example.com>")))[0] == 250
    first = await conversation_of(mailbox, "a1@example.com")
    chat = events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": "acme",
            "channel": "webchat",
            "address": "v-" + "ab" * 16,
            "provider_id": "chat-1",
            "occurred_at": events.now_ms(),
            "body": "me again, from the chat",
        },
    )
    customer = (await record(mailbox, first))["customer"]
    await customers.link(mailbox.world.store, "acme", customer, f"webchat:{chat.address}")
    await bus.ingest(mailbox.world.store, chat)
    assert (await mailbox.route())[chat.id] == first


async def test_a_reply_to_a_closed_conversation_opens_it_again(mailbox: Mailbox) -> None:
    w = mailbox.world
    await w.available("amy")
    assert (await mailbox.send(mail("My invoice is wrong.", Message_ID="<a1@example.com>")))[0] == 250
    conversation = await conversation_of(mailbox, "a1@example.com")
    await w.accept_offer("amy")
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")  # support: no wrap-up
    assert (await record(mailbox, conversation))["state"] == "closed"

    reply = mail("It is still wrong.", subject="Re: Invoice", Message_ID="<a2@example.com>")
    reply["In-Reply-To"] = reply["References"] = "<a1@example.com>"
    assert (await mailbox.send(reply))[0] == 250
    assert await conversation_of(mailbox, "a2@example.com") == conversation
    again = await record(mailbox, conversation)
    # offered again to amy, as a new reservation (the first one's record stays as it ended)
    assert (again["state"], again["agent"], again["reservation"]) == ("reserved", "amy", f"{conversation}.2")
    assert "closed_at" not in again and "disposition" not in again
    open_conv = await w.store.redis.hget(Keys("acme").customer(again["customer"]), "open_conv")
    assert open_conv.decode() == conversation
    history = [e.body.strip() for e in await conversations.history(w.store, "acme", conversation)]
    assert history == ["My invoice is wrong.", "It is still wrong."]
    await w.accept_offer("amy")  # and it can be worked and closed again
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    assert (await record(mailbox, conversation))["state"] == "closed"


async def test_a_reply_while_the_agent_wraps_up_opens_a_new_conversation(mailbox: Mailbox) -> None:
    """The agent's slot is held for the closed conversation until wrap-up ends: it is not
    offered again under them; the reply starts a conversation of its own."""
    w = mailbox.world
    await w.available("amy")
    assert (await mailbox.send(mail("Refund please", Message_ID="<a1@example.com>")))[0] == 250
    conversation = await conversation_of(mailbox, "a1@example.com")
    await w.accept_offer("amy")
    await atomic.close(w.store, "acme", conversation, by="amy", disposition="resolved", wrapup_ms=600_000)
    reply = mail("Thanks!", subject="Re: Invoice", Message_ID="<a2@example.com>", In_Reply_To="<a1@example.com>")
    assert (await mailbox.send(reply))[0] == 250
    assert await conversation_of(mailbox, "a2@example.com") != conversation
    assert (await record(mailbox, conversation))["state"] == "closed"


async def test_a_reply_into_someone_elses_closed_conversation_does_not_reopen_it(mailbox: Mailbox) -> None:
    assert (await mailbox.send(mail("My invoice is wrong.", Message_ID="<a1@example.com>")))[0] == 250
    conversation = await conversation_of(mailbox, "a1@example.com")
    await atomic.close(mailbox.world.store, "acme", conversation, by="", disposition="resolved", wrapup_ms=0)
    # someone who was on Cc replies to the closed thread
    reply = mail(
        "Please send me her balance",
        From="bob@corp.example",
        subject="Re: Invoice",
        Message_ID="<x1@corp.example>",
        In_Reply_To="<a1@example.com>",
    )
    assert (await mailbox.send(reply, sender="bob@corp.example"))[0] == 250
    theirs = await conversation_of(mailbox, "x1@corp.example")
    assert theirs != conversation
    assert (await record(mailbox, conversation))["state"] == "closed"
    assert (await record(mailbox, theirs))["customer"] != (await record(mailbox, conversation))["customer"]
