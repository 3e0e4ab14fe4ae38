"""Composing an outbound email: the tenant's branded HTML and its plain-text
alternative from templates/email/, the addresses, the threading headers and the
attachments, as one standard-library EmailMessage.

A tenant may override the look with templates/email/<tenant>/reply.html (and
reply.txt); the others use templates/email/reply.*.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import jinja2

from router import events
from router.config import Tenant
from router.templating import pages

HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#1f6feb"
# Bodies quoted-printable or base64 and headers RFC 2047-encoded: the message is plain
# ASCII, so it passes any relay, with or without 8BITMIME.
SEVEN_BIT = policy.default.clone(cte_type="7bit")


@dataclass
class Draft:
    """Everything an outbound email needs besides its body, decided by the sender."""

    sender: str  # the From address
    to: str
    subject: str
    message_id: str  # without brackets
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    reply_to: str = ""
    token: str = ""
    files: list[tuple[events.Attachment, bytes]] = field(default_factory=list)  # stored attachments, read
    links: list[events.Attachment] = field(default_factory=list)  # attachments only reachable by URL


def render(tenant: Tenant, message: events.OutboundMessage, draft: Draft) -> tuple[str, str]:
    """(plain text, HTML) of the message in the tenant's branding."""
    agent = next((a for a in tenant.agents if a.id == message.agent), None)
    context = {
        "tenant_name": tenant.email.from_name or tenant.name or tenant.id,
        # the colour goes into a style attribute: only a plain hex colour may
        "brand_color": tenant.brand_color if HEX_COLOR.match(tenant.brand_color) else DEFAULT_COLOR,
        "subject": draft.subject,
        "body": message.body.strip(),
        "paragraphs": [p.split("\n") for p in re.split(r"\n\s*\n", message.body.strip().replace("\r\n", "\n")) if p],
        "agent_name": (agent.name or agent.id) if agent else "",
        "automatic": message.automatic,
        "token": draft.token,
        "links": [{"name": a.filename or a.url, "url": a.url} for a in draft.links],
    }
    env = pages()
    text = _template(env, tenant.id, "reply.txt").render(context)
    html = _template(env, tenant.id, "reply.html").render(context)
    return text.strip() + "\n", html


def _template(env: jinja2.Environment, tenant: str, name: str) -> jinja2.Template:
    return env.select_template([f"email/{tenant}/{name}", f"email/{name}"])


def build(tenant: Tenant, message: events.OutboundMessage, draft: Draft) -> EmailMessage:
    text, html = render(tenant, message, draft)
    mail = EmailMessage(policy=SEVEN_BIT)
    mail["From"] = formataddr((tenant.email.from_name or tenant.name or "", draft.sender))
    mail["To"] = draft.to
    mail["Subject"] = draft.subject
    mail["Date"] = format_datetime(_utc(message.occurred_at))
    mail["Message-ID"] = f"<{draft.message_id}>"
    if draft.in_reply_to:
        mail["In-Reply-To"] = f"<{draft.in_reply_to}>"
    if draft.references:
        mail["References"] = " ".join(f"<{r}>" for r in draft.references)
    if draft.reply_to:
        mail["Reply-To"] = draft.reply_to
    if message.automatic:
        # RFC 3834: an automatic answer, or automatic mail that answers nothing;
        # Exchange honours only its own header for out-of-office loops
        mail["Auto-Submitted"] = "auto-replied" if message.conversation and not message.campaign else "auto-generated"
        mail["X-Auto-Response-Suppress"] = "All"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    for attachment, data in draft.files:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not subtype or maintype in ("multipart", "message"):
            # bytes can only be attached as a leaf part; a forwarded .eml keeps its name
            maintype, subtype = "application", "octet-stream"
        # a customer's file name may hold line breaks, which no header can
        filename = " ".join(attachment.filename.split()) or "attachment"
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
