"""Composing an outbound email: the tenant's branded HTML and its plain-text
alternative from templates/email/, the addresses, the threading headers and the
attachments, as one standard-library EmailMessage.

A tenant may override the look with templates/email/<tenant>/reply.html (and
reply.txt); the others use templates/email/reply.*.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from zoneinfo import ZoneInfo

import jinja2

from router import events, names
from router.config import Tenant
from router.templating import pages

log = logging.getLogger(__name__)

HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#1f6feb"


class _ListHeader(UnstructuredHeader):
    """RFC 2369/2919 list headers hold URIs and ids in angle brackets, which the email
    package would RFC 2047-encode once a long one (a signed unsubscribe link) passes 78
    characters, and no mail client reads a link out of an encoded word. Folded only
    between its items instead, never encoded (values are checked ASCII, see list_headers)."""

    def fold(self, *, policy: policy.Policy) -> str:
        items = ITEM_BREAK.split(str(self))
        return f"{self.name}: " + ("," + policy.linesep + " ").join(items) + policy.linesep


ITEM_BREAK = re.compile(r"(?<=>)\s*,\s*")
_HEADERS = HeaderRegistry()
for _name in ("list-unsubscribe", "list-unsubscribe-post", "list-id"):
    _HEADERS.map_to_type(_name, _ListHeader)

# Bodies quoted-printable or base64 and headers RFC 2047-encoded: the message is plain
# ASCII, so it passes any relay, with or without 8BITMIME.
SEVEN_BIT = policy.default.clone(cte_type="7bit", header_factory=_HEADERS)

# Headers an OutboundMessage's metadata may add to the mail as "header:<Name>" (the
# campaign worker's RFC 8058 one-click unsubscribe). Only these: metadata must never
# set an address header or anything else that changes where or how the mail goes.
METADATA_HEADER = "header:"
LIST_HEADERS = {name.lower(): name for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id")}
_URI = r"<(?:https?|mailto):[\x21-\x3b\x3d\x3f-\x7e]+>"  # printable ASCII, no angle brackets
_FORMS = {
    "List-Unsubscribe": re.compile(rf"{_URI}(?:[ ]*,[ ]*{_URI})*"),
    "List-Unsubscribe-Post": re.compile(r"List-Unsubscribe=One-Click"),  # the only value RFC 8058 has
    "List-Id": re.compile(r"(?:[\x20-\x3b\x3d\x3f-\x7e]* )?<[A-Za-z0-9._-]+\.[A-Za-z0-9.-]+>"),
}
MAX_LIST_ITEM = 900  # each item on a line of its own, within RFC 5322's 998
MAX_QUOTED = 10_000  # characters of the answered mail quoted below a reply


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
    cc: list[str] = field(default_factory=list)  # others in the conversation the agent chose to copy
    token: str = ""
    files: list[tuple[events.Attachment, bytes]] = field(default_factory=list)  # stored attachments, read
    links: list[events.Attachment] = field(default_factory=list)  # attachments only reachable by URL
    quoted: events.HistoryEntry | None = None  # the customer's mail it answers, quoted below the reply


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
        "quote": _quote(tenant, draft.quoted) if draft.quoted and not message.automatic else None,
        "ratings": survey_ratings(message.metadata),
    }
    env = pages()
    text = _template(env, tenant.id, "reply.txt").render(context)
    html = _template(env, tenant.id, "reply.html").render(context)
    return text.strip() + "\n", html


SURVEY_RATING = "survey:rating:"  # a survey email's signed one-click link per rating (router/surveys.py)
_LINK = re.compile(r"https?://[\x21-\x7e]+")


def survey_ratings(metadata: Mapping[str, str]) -> list[dict[str, object]]:
    """A survey email's rating links, 1 to 5, as buttons (HTML) and lines (text); only
    plain http(s) links, whatever else the metadata holds."""
    found = []
    for rating in range(1, 6):
        link = metadata.get(f"{SURVEY_RATING}{rating}", "")
        if _LINK.fullmatch(link):
            found.append({"rating": rating, "url": link})
    return found


def _quote(tenant: Tenant, entry: events.HistoryEntry) -> dict[str, object]:
    """The answered mail as mail clients quote it: who wrote it when (in the tenant's time
    zone), then its text line by line, cut at MAX_QUOTED characters."""
    when = dt.datetime.fromtimestamp(entry.occurred_at / 1000, ZoneInfo(tenant.timezone))
    name = names.clean(entry.name or entry.metadata.get("from_name", ""))
    who = formataddr((name, entry.address)) if name else entry.address
    text = entry.body.strip()
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED].rstrip() + " […]"
    return {"intro": f"On {when.day} {when:%b %Y, at %H:%M}, {who} wrote:", "lines": text.splitlines()}


def _template(env: jinja2.Environment, tenant: str, name: str) -> jinja2.Template:
    return env.select_template([f"email/{tenant}/{name}", f"email/{name}"])


def list_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """The allowed list headers a message's metadata asks for, checked; ValueError for
    a malformed one (no CR/LF or anything else outside printable ASCII gets through) or
    a one-click POST without an https link to post to (RFC 8058 section 3.1)."""
    found: dict[str, str] = {}
    for key, value in metadata.items():
        if not key.startswith(METADATA_HEADER):
            continue
        name = LIST_HEADERS.get(key[len(METADATA_HEADER) :].lower())
        if name is None:
            log.warning("metadata %r names a header outbound mail may not carry; left out", key)
            continue
        value = value.strip()
        if not _FORMS[name].fullmatch(value) or any(len(i) > MAX_LIST_ITEM for i in ITEM_BREAK.split(value)):
            raise ValueError(f"{name} {value[:200]!r} is not a valid {name} header value")
        found[name] = value
    if "List-Unsubscribe-Post" in found and "<https://" not in found.get("List-Unsubscribe", ""):
        raise ValueError("List-Unsubscribe-Post needs a List-Unsubscribe https link (RFC 8058)")
    return found


def build(tenant: Tenant, message: events.OutboundMessage, draft: Draft) -> EmailMessage:
    text, html = render(tenant, message, draft)
    mail = EmailMessage(policy=SEVEN_BIT)
    mail["From"] = formataddr((tenant.email.from_name or tenant.name or "", draft.sender))
    mail["To"] = draft.to
    if draft.cc:
        mail["Cc"] = ", ".join(draft.cc)
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
    for name, value in list_headers(message.metadata).items():
        mail[name] = value
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
