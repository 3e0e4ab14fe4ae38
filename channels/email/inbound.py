"""Inbound email: the aiosmtpd handler behind the `smtp` process.

RCPT: only the tenants' own addresses and domains are accepted (550 for anyone
else: never an open relay); an address with a conversation token
(help+c-xxxxxxxxxx@) is the address without it. DATA: parse the message
(channels.email.mime), store its attachments and the message as it came
(the contact's `raw`, for the desk's original-message view), normalise it to one InboundContact
per tenant addressed, with the conversation tokens it carries ahead of its
In-Reply-To/References (channels.email.threads), append it to the tenant's
inbound stream, and only then answer 250. A delivery report marks the message
it returns instead (channels.email.status), when one of our own mail servers
handed it over (channels.email.trust). A failure before the contact is on
the stream answers 451, so the sending server retries; the retry carries the
same Message-ID and adds nothing twice. A message too deeply nested to read at
all answers 554: a retry would fail the same way. The size limit (552) is enforced by
aiosmtpd's data_size_limit, before this handler runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis.exceptions import RedisError

from channels.email import mime, threads
from channels.email import status as reports
from channels.email.trust import MailTrust
from router import bus, events
from router.attachments import AttachmentStore, AttachmentTooLarge
from router.config import Deployment, Tenant
from router.customers import InvalidAddress, normalise
from router.store import Store

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # characters; events.Body's limit
MAX_SUBJECT = 998  # RFC 5322's line limit is plenty for a subject
MAX_METADATA = 1024  # characters of a header kept in a contact's metadata
# A message this big is read in a worker thread: parsing holds the event loop for as long
# as it runs (seconds for a message near SMTP_MAX_BYTES), and every other SMTP session
# waits meanwhile. A smaller one parses faster than the hand-off to a thread costs.
THREAD_PARSE_BYTES = 256 * 1024

_T = TypeVar("_T")

Addressed = list[tuple[Tenant, str]]  # each tenant a mail is for, with the address it came to
Claim = Callable[[Addressed, mime.Mail, str, str, object], Awaitable[tuple[str | None, Addressed]]]
"""Another channel's first look at a parsed mail, given (tenants, mail, envelope sender,
provider id, SMTP peer): it takes the mail in for the tenants it claims and returns
(its SMTP reply, or None when it claims none of them; the tenants left to email)."""


async def parse(raw: bytes, reader: Callable[[bytes], _T]) -> _T:
    """`reader(raw)`, in a worker thread when the message is big (THREAD_PARSE_BYTES)."""
    if len(raw) >= THREAD_PARSE_BYTES:
        return await asyncio.to_thread(reader, raw)
    return reader(raw)


class InboundHandler:
    """The aiosmtpd handler: handle_RCPT chooses who we accept mail for, handle_DATA takes it in."""

    def __init__(
        self,
        store: Store,
        deployment: Deployment,
        attachments: AttachmentStore,
        trust: MailTrust | None = None,
        claims: Sequence[Claim] = (),
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.attachments = attachments
        self.trust = trust or MailTrust()  # whose say-so moves a delivery record
        self.claims = tuple(claims)  # asked in turn before a mail is taken in as email

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        if self.deployment.tenant_by_email(threads.without_token(address)) is None:
            log.warning("mail from %s to %s refused: not an address of ours", envelope.mail_from, address)
            return f"550 5.7.1 <{address}>: relay access denied, no such recipient here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        return await self.take_in(envelope.original_content or b"", envelope.mail_from, envelope.rcpt_tos, session.peer)

    async def take_in(self, raw: bytes, mail_from: str | None, rcpt_tos: list[str], peer: object) -> str:
        """One message, as SMTP's DATA hands it over (the IMAP fetcher hands over each message
        of a mailbox the same way): returns the SMTP reply, 250 once it is on the stream."""
        try:
            mail = await parse(raw, mime.read)
        except mime.Unreadable as exc:  # the same every time: a retry would only come back for days
            log.warning("mail from %s (%s) refused: %s", mail_from, peer, exc)
            return f"554 5.6.0 message refused: {exc}"
        except Exception:  # the parser is lenient; this is a bug of ours, so the sender retries
            log.exception("mail from %s (%s) could not be parsed", mail_from, peer)
            return "451 4.3.0 message could not be read; try again later"
        provider_id = mail.message_id or mime.content_id(raw)
        tenants = self._tenants(rcpt_tos)
        # another channel's mail (a fax gateway's: a received fax, or a report on one we
        # sent): it answers for the tenants it claims; the others take it in as email
        for claim in self.claims:
            claimed, tenants = await claim(tenants, mail, mail_from or "", provider_id, peer)
            if claimed is not None and (not claimed.startswith("250") or not tenants):
                return claimed
        if reports.looks_like(raw, mail_from or "", mail.sender, mail.bounce):
            if not self.trust.ours(peer):
                # anyone can write a DSN quoting a Message-ID they were sent: only one our
                # MX or relay handed over may mark a message (never answered either way)
                log.warning(
                    "bounce %s from %s ignored: not one of our mail servers (SMTP_TRUSTED_NETWORKS)", provider_id, peer
                )
                return "250 2.0.0 OK: delivery report received"
            return await self._bounce(raw, tenants, provider_id)
        sender = mail.sender or (mail_from or "").lower()
        try:
            sender = normalise("email", sender)
        except InvalidAddress:
            log.warning("mail %s from %r (%s) refused: no sender address to answer", provider_id, sender, peer)
            return "550 5.1.7 message has no usable sender address (From)"
        if mail_from in ("", "<>", None):  # a null return path: an automatic message (RFC 3834)
            mail.auto_submitted = True
        # The conversation's token (reply address, subject) joins it when the client dropped
        # In-Reply-To; first, so a long References chain cannot crowd it out.
        tokens = threads.tokens_in(rcpt_tos + mail.to, mail.subject)
        mail.thread = [threads.thread_ref(t) for t in tokens] + mail.thread
        try:
            attachments, metadata = await self._store_files(mail, raw)
            contacts = [
                self._contact(mail, tenant, to, sender, provider_id, attachments, metadata) for tenant, to in tenants
            ]
            ids = []
            for contact in contacts:
                added, entry_id = await bus.ingest(self.store, contact)
                ids.append(entry_id)
                if not added:
                    log.info("mail %s for %s was delivered again; already on the stream", provider_id, contact.tenant)
        except events.InvalidEvent as exc:
            log.warning("mail %s from %s refused: %s", provider_id, sender, exc)
            return "554 5.6.0 message could not be turned into a contact"
        except (RedisError, OSError) as exc:
            log.error("mail %s from %s not taken in (%r); the sender will retry", provider_id, sender, exc)
            return "451 4.3.0 temporary failure, try again later"
        log.info("mail %s from %s taken in for %s", provider_id, sender, ", ".join(t.id for t, _ in tenants))
        return f"250 2.0.0 OK: queued as {' '.join(ids)}"

    def _tenants(self, recipients: list[str]) -> list[tuple[Tenant, str]]:
        """Each tenant addressed, once, with the first of its addresses the mail went to."""
        found: dict[str, tuple[Tenant, str]] = {}
        for address in recipients:
            address = threads.without_token(address.lower())  # help+c-xxxxxxxxxx@ is help@
            tenant = self.deployment.tenant_by_email(address)
            if tenant is not None and tenant.id not in found:
                found[tenant.id] = (tenant, address)
        return list(found.values())

    async def _bounce(self, raw: bytes, tenants: list[tuple[Tenant, str]], provider_id: str) -> str:
        """A delivery report: mark the message it returns, never open a conversation, never
        answer it (250 even when it matches nothing: a refusal would only bounce again)."""
        try:
            report = await parse(raw, reports.read)
        except Exception:  # a report we cannot read is still only a report
            log.exception("bounce %s could not be read; dropped", provider_id)
            return "250 2.0.0 OK: delivery report received"
        outcomes = []
        try:
            for tenant, _to in tenants:
                outcomes.append((tenant.id, *await reports.apply(self.store, tenant.id, report)))
        except (RedisError, OSError) as exc:
            log.error("bounce %s not recorded (%r); the sender will retry", provider_id, exc)
            return "451 4.3.0 temporary failure, try again later"
        for tenant_id, outcome, status in outcomes:
            if outcome == "unmatched":
                log.warning(
                    "bounce %s for %s (%s %s) matches no message of ours (quotes %s); dropped",
                    provider_id, tenant_id, report.action, report.status, ", ".join(report.quoted_ids) or "nothing",
                )  # fmt: skip
            else:
                log.info("bounce %s for %s: %s %s (%s)", provider_id, tenant_id, outcome, status, report.error)
        return "250 2.0.0 OK: delivery report received"

    async def _store_files(self, mail: mime.Mail, raw: bytes) -> tuple[list[events.Attachment], dict[str, str]]:
        attachments, omitted, metadata = [], [], {}
        # the message as it came, headers and all, for the desk's "original message" view
        try:
            metadata["raw"] = await self.attachments.put(raw)
        except AttachmentTooLarge:
            metadata["raw_omitted"] = "1"
        for part in mail.attachments:
            try:
                ref = await self.attachments.put(part.data)
            except AttachmentTooLarge:
                log.warning(
                    "attachment %r of %s (%d bytes) left out: too large", part.filename, mail.message_id, len(part.data)
                )
                omitted.append(f"{part.filename or part.content_type} ({len(part.data)} bytes)")
                continue
            attachments.append(
                events.Attachment(url=ref, content_type=part.content_type, filename=part.filename, size=len(part.data))
            )
        if mail.parts_left_out:
            omitted.append(f"{mail.parts_left_out} more attachments (at most {mime.MAX_ATTACHMENTS} a message)")
        if omitted:
            metadata["attachments_omitted"] = "; ".join(omitted)
        if mail.html:
            # Kept for display once sanitised; the body holds the readable text.
            try:
                metadata["html"] = await self.attachments.put(mail.html.encode("utf-8"))
            except AttachmentTooLarge:
                metadata["html_omitted"] = "1"  # the text body is still there
        return attachments, metadata

    def _others(self, mail: mime.Mail, sender: str) -> str:
        """Whom else the mail was to (its To and Cc, none of our own addresses), for an agent's
        explicit reply-all: ", "-separated, as many whole addresses as fit the metadata."""
        others = [
            a
            for a in dict.fromkeys(mail.to)
            if a != sender and self.deployment.tenant_by_email(threads.without_token(a)) is None
        ]
        kept = ""
        for address in others:
            if len(kept) + len(address) + 2 > MAX_METADATA:
                break
            kept = f"{kept}, {address}" if kept else address
        return kept

    def _contact(
        self,
        mail: mime.Mail,
        tenant: Tenant,
        to: str,
        sender: str,
        provider_id: str,
        attachments: list[events.Attachment],
        stored: dict[str, str],
    ) -> events.InboundContact:
        metadata = dict(stored)
        details = {
            "from_name": mail.sender_name,
            "reply_to": mail.reply_to if mail.reply_to != sender else "",
            "date": mail.date,
            "message_id": mail.message_id,
            "defects": ", ".join(sorted(set(mail.defects))),
            "cc": self._others(mail, sender),
        }
        metadata.update({k: v[:MAX_METADATA] for k, v in details.items() if v})
        if mail.auto_submitted:
            metadata["auto_submitted"] = "1"
        body = mail.body
        if mail.parts_left_out:  # where the agent reads it
            body += f"\n\n[{mail.parts_left_out} more attachments left out: at most {mime.MAX_ATTACHMENTS} a message]"
        if len(body) > MAX_BODY:
            body = body[: MAX_BODY - 40] + "\n[message shortened]"
            metadata["truncated"] = "1"
        return events.build(
            events.InboundContact,
            {
                "id": events.new_id(),
                "tenant": tenant.id,
                "channel": "email",
                "address": sender,
                "name": mail.sender_name,
                "to": to,
                "provider_id": provider_id[:1024],
                "occurred_at": events.now_ms(),
                "body": body,
                "subject": mail.subject[:MAX_SUBJECT],
                "attachments": attachments,
                "thread": mail.thread[:50],
                "metadata": metadata,
            },
        )
