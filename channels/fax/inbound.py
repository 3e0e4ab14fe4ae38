"""Received faxes: mail from one of a tenant's fax gateways, turned into contacts.

`classify` reads a parsed mail from a gateway it trusts (channels.email.trust: the
SMTP peer, not the From line) and says what it is: a received fax (the gateway's
pattern found the sender's number), a report on a fax we sent (its status
pattern matched, or it is a bounce), or None (not a gateway's, or nothing a
pattern recognises: it stays an ordinary email, so nothing is lost). `receive`
is the SMTP handler's hook: it takes a fax in, or applies a report, and answers
the SMTP reply, 250 only once the contact is on the stream.

A fax's page count is read from the file itself; where it disagrees with the
gateway's, or the file cannot be read, or no PDF/TIFF came with the mail, the
contact still arrives, with a note that says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from channels.email import mime
from channels.email.trust import MailTrust
from channels.fax import gateways, pages
from channels.fax.status import FaxStatus, apply
from router import bus, events
from router.attachments import AttachmentStore, AttachmentTooLarge
from router.config import Tenant
from router.config.fax import FaxGateway
from router.customers import InvalidAddress, normalise
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

COVER_CHARS = 4000  # the gateway's own text kept under the summary line
MAX_REFS = 10  # Message-IDs of a report looked up


@dataclass(frozen=True)
class FaxContact:
    """A received fax, as read from the gateway's mail."""

    gateway: str
    number: str  # the sender's fax number, E.164
    claimed_pages: int | None  # what the gateway says
    documents: list[mime.Part]  # the PDF and TIFF files
    others: list[mime.Part] = field(default_factory=list)  # anything else attached
    cover: str = ""  # the mail's text


def classify(
    tenant: Tenant, mail: mime.Mail, envelope_sender: str, trust: MailTrust, peer: object
) -> FaxContact | FaxStatus | None:
    """What a mail to this tenant is, fax-wise (see the module's docstring), from the SMTP
    peer `peer` (aiosmtpd's session.peer)."""
    gateway = gateways.gateway_for(tenant, mail.sender, envelope_sender)
    if gateway is None:
        return None
    if not trust.gateway(gateway, peer, mail.auth_results):
        # the gateway's address alone is anyone's to write: without this, anyone could put
        # a "fax" from any number into a customer's history, or settle our faxes
        log.warning(
            "mail %s names fax gateway %s of %s but came from %s, not a network it is trusted from; taken as email",
            mail.message_id, gateway.name, tenant.id, peer,
        )  # fmt: skip
        return None
    report = _report(gateway, mail)
    if report is not None:
        return report
    text = gateways.search_text(gateway, mail.subject, mail.body)
    pattern = gateways.compiled(gateway.number_pattern)  # required: config refuses a gateway without one
    found = pattern.search(text) if pattern is not None else None
    if found is None:
        log.warning(
            "mail %s from fax gateway %s of %s: no fax number found; taken as email",
            mail.message_id,
            gateway.name,
            tenant.id,
        )
        return None
    try:
        number = normalise("fax", found.group("number"), gateway.region)
    except InvalidAddress as exc:  # a withheld caller id, or a garbled one
        log.warning(
            "mail %s from fax gateway %s of %s: %s; taken as email", mail.message_id, gateway.name, tenant.id, exc
        )
        return None
    documents = [p for p in mail.attachments if pages.kind_of(p.data, p.content_type, p.filename)]
    return FaxContact(
        gateway=gateway.name,
        number=number,
        claimed_pages=gateways.claimed_pages(gateway, found, text),
        documents=documents,
        others=[p for p in mail.attachments if p not in documents],
        cover=mail.body.strip()[:COVER_CHARS],
    )


def _report(gateway: FaxGateway, mail: mime.Mail) -> FaxStatus | None:
    """A confirmation or failure mail (failure looked for first: "not sent" contains "sent")."""
    text = f"{mail.subject}\n{mail.body[: gateways.SEARCH_CHARS]}"
    for status, pattern in (("failed", gateway.status_pattern_failed), ("delivered", gateway.status_pattern_ok)):
        found = (regex := gateways.compiled(pattern)) is not None and regex.search(text)
        if found:
            named = found.groupdict()
            refs = [named["ref"].strip("<>")] if named.get("ref") else []
            detail = (named.get("reason") or found.group(0)) if status == "failed" else ""
            return FaxStatus(gateway.name, status, _refs(refs, mail), detail.strip())
    if mail.bounce:  # the gateway's mail server refused our fax mail
        return FaxStatus(gateway.name, "failed", _refs([], mail), "the gateway bounced the fax mail")
    return None


def _refs(first: list[str], mail: mime.Mail) -> tuple[str, ...]:
    quoted = mime.MESSAGE_ID.findall(mail.body[: gateways.SEARCH_CHARS])
    for part in mail.attachments:  # a bounce that returns our message names its Message-ID
        if part.content_type == "message/rfc822":
            head = part.data[:8192].decode("latin-1").partition("\r\n\r\n")[0]
            quoted += [
                m
                for line in head.splitlines()
                if line.lower().startswith("message-id:")
                for m in mime.MESSAGE_ID.findall(line)
            ]
    found = [r for r in first + mail.thread + quoted if r != mail.message_id]
    return tuple(dict.fromkeys(found))[:MAX_REFS]


async def contact(
    fax: FaxContact, tenant: Tenant, mail: mime.Mail, to: str, provider_id: str, store: AttachmentStore
) -> events.InboundContact:
    """The fax as a contact: its files stored, their pages counted, notes where anything is off."""
    notes: list[str] = []
    attachments: list[events.Attachment] = []
    counted: int | None = 0
    for part in fax.documents + fax.others:
        name = part.filename or part.content_type
        try:
            ref = await store.put(part.data)
        except AttachmentTooLarge:
            notes.append(f"{name} ({len(part.data)} bytes) left out: too large")
            counted = None if part in fax.documents else counted
            continue
        kind = pages.kind_of(part.data, part.content_type, part.filename)
        attachments.append(
            events.Attachment(
                url=ref, content_type=kind or part.content_type, filename=part.filename, size=len(part.data)
            )
        )
        if part in fax.documents and counted is not None:
            try:
                counted += await asyncio.to_thread(pages.count, part.data, kind)
            except pages.Unreadable as exc:
                notes.append(f"{name}: {exc}; pages not counted")
                counted = None
    if not fax.documents:
        notes.append("no PDF or TIFF came with the gateway's mail: the fax itself is missing")
        counted = None
    if counted is not None and fax.claimed_pages is not None and counted != fax.claimed_pages:
        notes.append(f"the gateway reports {fax.claimed_pages} page(s), the file has {counted}")
    shown = counted if counted is not None else fax.claimed_pages
    summary = f"Fax from {fax.number}, " + (f"{shown} page(s)" if shown is not None else "pages unknown")
    metadata = {
        "gateway": fax.gateway,
        "pages": "" if counted is None else str(counted),
        "claimed_pages": "" if fax.claimed_pages is None else str(fax.claimed_pages),
        "note": "; ".join(notes),
        "message_id": mail.message_id,
        "date": mail.date,
    }
    return events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": tenant.id,
            "channel": "fax",
            "address": fax.number,
            "to": to,
            "provider_id": provider_id[:1024],
            "occurred_at": events.now_ms(),
            "body": "\n\n".join(t for t in (summary, *notes, fax.cover) if t),
            "subject": mail.subject[:998],
            "attachments": attachments,
            "metadata": {k: v[:1024] for k, v in metadata.items() if v},
        },
    )


async def receive(
    store: Store,
    attachments: AttachmentStore,
    tenants: list[tuple[Tenant, str]],
    mail: mime.Mail,
    envelope_sender: str,
    provider_id: str,
    trust: MailTrust,
    peer: object,
) -> tuple[str | None, list[tuple[Tenant, str]]]:
    """A fax gateway's mail to these tenants (tenant, address it came to), taken in for
    the tenants it is a gateway of: (the SMTP reply, or None when it is nobody's
    gateway; the tenants it is no gateway of, for the email path to take in)."""
    found, rest = [], []
    for tenant, to in tenants:
        item = classify(tenant, mail, envelope_sender or "", trust, peer)
        if item is None:
            rest.append((tenant, to))
        else:
            found.append((tenant, to, item))
    if not found:
        return None, rest
    ids = []
    try:
        for tenant, to, item in found:
            if isinstance(item, FaxStatus):
                outcome, status = await apply(store, tenant.id, item)
                log.log(
                    logging.WARNING if outcome == "unknown" else logging.INFO,
                    "fax report %s from %s for %s: %s %s (refs %s)",
                    provider_id,
                    item.gateway,
                    tenant.id,
                    outcome,
                    status,
                    ", ".join(item.refs) or "none",
                )
                continue
            fax = await contact(item, tenant, mail, to, provider_id, attachments)
            added, entry_id = await bus.ingest(store, fax)
            # the reply goes back through the gateway this number last faxed in by
            await store.redis.hset(Keys(tenant.id).fax_routes, fax.address, item.gateway)
            ids.append(entry_id)
            log.info(
                "fax %s from %s via %s for %s %s",
                provider_id,
                fax.address,
                item.gateway,
                tenant.id,
                "taken in" if added else "delivered again; already on the stream",
            )
    except events.InvalidEvent as exc:
        log.warning("fax mail %s refused: %s", provider_id, exc)
        return "554 5.6.0 fax could not be turned into a contact", []
    except (RedisError, OSError) as exc:
        log.error("fax mail %s not taken in (%r); the sender will retry", provider_id, exc)
        return "451 4.3.0 temporary failure, try again later", []
    return f"250 2.0.0 OK: {'queued as ' + ' '.join(ids) if ids else 'fax report received'}", rest
