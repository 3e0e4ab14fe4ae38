"""Delivery status notifications (RFC 3464): a bounce marks the outbound message it
reports on as failed, and never opens a conversation.

A DSN is recognised by its multipart/report; report-type=delivery-status, or by
the usual signs of older mailers: a null return path or a MAILER-DAEMON /
postmaster sender together with a message/delivery-status part. The message it
reports on is found by the Message-IDs it quotes (the returned headers or the
returned message) that we recorded when the message left
(channels.email.threads.remember_sent), looked up only in the keyspace of the
tenant the report was addressed to, and only for a report one of our own mail
servers handed over (channels.email.trust; the SMTP handler checks the peer).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from channels.email import delivery
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

DAEMONS = ("mailer-daemon@", "postmaster@", "mail-daemon@")
MAX_QUOTED = 10
QUOTED_ID = re.compile(rb"^Message-ID:[ \t]*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)


@dataclass
class Report:
    """What a DSN says about the message it returns."""

    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str  # e.g. "smtp; 550 5.1.1 <gone@example.com>: user unknown"
    recipient: str
    quoted_ids: list[str]  # Message-IDs it quotes, the returned message's first

    @property
    def outcome(self) -> str:
        """Our delivery status for it: failed, delivered, or "" (a delay changes nothing)."""
        if self.action == "failed":
            return "failed"
        if self.action in ("delivered", "relayed", "expanded"):
            return "delivered"
        return ""

    @property
    def error(self) -> str:
        words = [f"bounced by {self.recipient}" if self.recipient else "bounced", self.status, self.diagnostic]
        return " ".join(w for w in words if w)[:1024] if self.outcome == "failed" else ""


def looks_like(raw: bytes, envelope_sender: str, from_address: str, flagged: bool) -> bool:
    """A DSN, by its content type (flagged by mime.read) or by the older mailers' signs."""
    if flagged:
        return True
    automatic = envelope_sender in ("", "<>") or from_address.lower().startswith(DAEMONS)
    return automatic and b"message/delivery-status" in raw.lower()


def read(raw: bytes) -> Report:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    fields: dict[str, str] = {}
    quoted: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status" and not fields:
            fields = _recipient_fields(part)
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            quoted += _ids(_headers_of(part))
        elif kind == "message/rfc822" and part.is_multipart():
            quoted += _ids(part.get_payload(0))
    # A report with its parts mislabelled still quotes the header line.
    own = message.get("Message-ID", "")
    body = raw.partition(b"\r\n\r\n")[2] or raw.partition(b"\n\n")[2]
    quoted += [m.decode("utf-8", "replace") for m in QUOTED_ID.findall(body)]
    # a handful is plenty (one lookup each): a report quoting hundreds is not a real one
    quoted = [q for q in dict.fromkeys(quoted) if f"<{q}>" != own.strip() and len(q) <= 500][:MAX_QUOTED]
    return Report(
        action=fields.get("action", "failed").lower().split()[0] if fields.get("action") else "failed",
        status=fields.get("status", "").split()[0] if fields.get("status") else "",
        diagnostic=" ".join(fields.get("diagnostic-code", "").split()),
        recipient=fields.get("final-recipient", "").partition(";")[2].strip() or fields.get("final-recipient", ""),
        quoted_ids=quoted,
    )


def _recipient_fields(part: EmailMessage) -> dict[str, str]:
    """The first per-recipient block of a delivery-status part (the one that failed, if any)."""
    blocks = part.get_payload()
    if not isinstance(blocks, list):  # not parsed into blocks: read the fields as headers
        blocks = [BytesParser(policy=policy.default).parsebytes(_bytes(part), headersonly=True)]
    recipients = [b for b in blocks[1:] if b.get("Action")] or [b for b in blocks if b.get("Action")]
    failed = [b for b in recipients if str(b.get("Action", "")).strip().lower() == "failed"]
    chosen = (failed or recipients or [None])[0]
    if chosen is None:
        return {}
    return {k.lower(): " ".join(str(v).split()) for k, v in chosen.items()}


def _headers_of(part: EmailMessage) -> Message:
    return BytesParser(policy=policy.default).parsebytes(_bytes(part), headersonly=True)


def _bytes(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return str(part.get_payload()).encode("utf-8", "replace")


def _ids(headers: Message) -> list[str]:
    value = str(headers.get("Message-ID", "") or "")
    return re.findall(r"<([^<>\s]+)>", value)


async def apply(store: Store, tenant: str, report: Report) -> tuple[str, str]:
    """Mark the message the report returns: ("updated", status), ("unchanged", current),
    ("unmatched", "") when no quoted Message-ID is one of this tenant's messages, or
    ("ignored", action) for a report that changes nothing (a delay)."""
    keys = Keys(tenant)
    if not report.outcome:
        for quoted in report.quoted_ids:
            if await store.redis.exists(keys.provider_message(quoted)):
                return "ignored", report.action
        return "unmatched", ""
    for quoted in report.quoted_ids:
        # a fax mail the relay's MAILER-DAEMON returned is a fax that failed; a positive
        # report only says the gateway has the mail: the fax itself is the gateway's to report
        channel = "fax" if quoted.startswith(delivery.FAX_REFERENCE_PREFIX) else "email"
        if channel == "fax" and report.outcome != "failed":
            continue
        outcome, status = await delivery.mark(store, tenant, quoted, channel, report.outcome, report.error)
        if outcome != "unknown":
            return outcome, status
    return "unmatched", ""
