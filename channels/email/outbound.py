"""Outbound email: agents' replies, automatic answers and campaign mail, through
the deployment's SMTP relay (channels.email.delivery), or into the sandbox outbox
when no relay is configured.

Every message is composed in the tenant's branding (channels.email.compose) from
the tenant's address, with threading headers built from the conversation's email
history and the conversation's token in the Reply-To plus-address and the
subject (channels.email.threads). Our Message-ID is recorded before the message
leaves, so the customer's reply joins the conversation and a bounce finds it.
"""

from __future__ import annotations

import asyncio
import logging
import re

import jinja2
import msgspec

from channels.email import delivery, threads
from channels.email.compose import Draft, build
from channels.sandbox import SandboxSender
from channels.transport import PermanentFailure, Reconciled, reconcile_from_record
from router import conversations, events
from router.attachments import AttachmentStore
from router.config import Deployment, Tenant
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)

# One addr-spec, nothing a header could be split with.
ADDRESS = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+")


class EmailSender:
    channel = "email"

    def __init__(
        self, store: Store, deployment: Deployment, settings: Settings, *, timeout_s: float = delivery.TIMEOUT_S
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.settings = settings
        self.timeout_s = timeout_s
        self.sandbox = SandboxSender(store, self.channel)
        self.attachments = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)

    async def close(self) -> None:
        """Nothing held between sends."""

    @property
    def relay(self) -> bool:
        return bool(self.settings.smtp_relay_host)

    async def send(self, message: events.OutboundMessage) -> str:
        tenant = self.deployment.tenant(message.tenant)
        for address in (message.to, *message.cc):
            if not ADDRESS.fullmatch(address):
                raise PermanentFailure(f"{address!r} is not an email address")
        draft = await self.draft(tenant, message)
        try:
            mail = build(tenant, message, draft)
        except jinja2.TemplateError as exc:  # a tenant's own template that does not render
            raise PermanentFailure(f"the email template failed: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # a header the email package refuses: the same every attempt
            raise PermanentFailure(f"the email could not be composed: {exc}") from None
        await threads.remember_sent(self.store, tenant.id, message.conversation, draft.message_id, message.id)
        if not self.relay:
            return await self.sandbox.send(_as_sent(message, draft))
        return await delivery.send_recorded(
            self.store, self.settings, message, mail, draft.message_id, timeout_s=self.timeout_s
        )

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send (channels.transport.reconcile_from_record)."""
        if not self.relay:
            return await self.sandbox.reconcile(message)
        return await reconcile_from_record(self.store, message)

    async def draft(self, tenant: Tenant, message: events.OutboundMessage) -> Draft:
        """Addresses, subject, threading headers and attachments of one message."""
        sender = self._sender(tenant, message)
        domain = (tenant.email.sender() or sender).rpartition("@")[2] or "localhost"
        own_id = threads.message_id(message.id, domain)
        in_reply_to, references, subject, token, quoted = "", [], "", "", None
        if message.conversation:
            try:
                history = await conversations.history(self.store, tenant.id, message.conversation)
            except conversations.NotFound:
                history = []
            in_reply_to, references, subject = threads.thread_headers(history, message.id, domain)
            quoted = threads.answered(history, message.id)
            token = await threads.conversation_token(self.store, tenant.id, message.conversation)
        if message.subject:
            subject = threads.with_token(message.subject, token)
        elif subject or message.conversation:
            subject = threads.reply_subject(subject, token)
        else:
            subject = f"A message from {tenant.email.from_name or tenant.name or tenant.id}"
        files, links = await self._attachments(message)
        return Draft(
            sender=sender,
            to=message.to,
            subject=subject,
            message_id=own_id,
            in_reply_to=in_reply_to,
            references=references,
            reply_to=threads.plus_address(sender, token) if token and sender else "",
            cc=[a for a in message.cc if a != message.to],
            token=token,
            files=files,
            links=links,
            quoted=quoted,
        )

    def _sender(self, tenant: Tenant, message: events.OutboundMessage) -> str:
        """The address the customer wrote to when it is the tenant's, else the tenant's own."""
        wrote_to = threads.without_token(message.sender.strip().lower())
        owner = self.deployment.tenant_by_email(wrote_to) if wrote_to else None
        if owner is not None and owner.id == tenant.id:
            return wrote_to
        sender = tenant.email.sender()
        if not sender and self.relay:
            raise PermanentFailure(f"tenant {tenant.id} has no email address to send from ([tenants.email])")
        return sender

    async def _attachments(
        self, message: events.OutboundMessage
    ) -> tuple[list[tuple[events.Attachment, bytes]], list[events.Attachment]]:
        files, links = [], []
        for attachment in message.attachments:
            if attachment.url.startswith(("https://", "http://")):
                links.append(attachment)
                continue
            try:
                data = await asyncio.to_thread(self.attachments.read, attachment.url)
            except (KeyError, OSError) as exc:
                raise PermanentFailure(
                    f"attachment {attachment.filename or attachment.url!r} is not in the attachment store: {exc}"
                ) from None
            files.append((attachment, data))
        return files, links


def _as_sent(message: events.OutboundMessage, draft: Draft) -> events.OutboundMessage:
    """The message as the outbox shows it: with the subject and headers it would have had."""
    headers = {"message_id": draft.message_id, "in_reply_to": draft.in_reply_to, "reply_to": draft.reply_to}
    metadata = {**message.metadata, **{k: v for k, v in headers.items() if v}}
    return msgspec.structs.replace(message, sender=draft.sender, subject=draft.subject, metadata=metadata)
