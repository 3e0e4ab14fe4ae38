"""Reading an email: the standard library's email package does the MIME, this module
decides what an agent sees.

`read(raw)` never raises on a malformed message: what could be read is kept, and
what could not is counted in `defects`. Text parts and the headers people read
(subject, display names) are decoded here (not with get_content() or the email
package's header objects) so that a mislabelled legacy charset still reads: each
label is read with its supersets (channels.email.charsets), in the body and in
RFC 2047 encoded words alike, and raw 8-bit headers in the message's charset.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from functools import lru_cache
from html.parser import HTMLParser

from channels.email import charsets

MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
# Files kept from one message: a 287 KB mail of tiny parts made 9,000 files, a 990 KB
# event and a 1.9 MB inbox page. The rest are counted (Mail.parts_left_out), not kept.
MAX_ATTACHMENTS = 100
AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponse")
LIST_HEADERS = ("List-Id", "List-Unsubscribe")
AUTO_SUPPRESS = {"all", "autoreply", "oof"}  # X-Auto-Response-Suppress values that refuse an auto-reply


@dataclass
class Part:
    """An attachment (or a nested message) as it came: bytes, type and name."""

    data: bytes
    content_type: str
    filename: str


@dataclass
class Mail:
    """What an email holds for a contact."""

    sender: str = ""  # the From address (addr-spec), lower-case
    sender_name: str = ""
    reply_to: str = ""
    to: list[str] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    html: str = ""  # the HTML alternative or the HTML-only body, kept for sanitised display
    message_id: str = ""  # without angle brackets
    thread: list[str] = field(default_factory=list)  # In-Reply-To then References, without brackets
    date: str = ""
    auto_submitted: bool = False
    bounce: bool = False  # a delivery status notification (multipart/report)
    auth_results: list[str] = field(default_factory=list)  # Authentication-Results, topmost first
    attachments: list[Part] = field(default_factory=list)
    parts_left_out: int = 0  # attachments beyond MAX_ATTACHMENTS
    defects: list[str] = field(default_factory=list)


class Unreadable(ValueError):
    """A message no reading of ours will ever get through (multipart nested too deep for
    the parser): the sender should not retry it."""


class _ParseOnce(policy.EmailPolicy):
    """policy.default, except that a header value is parsed once, not on every access:
    the email package builds a new header object each time one is read (a part's
    Content-Type several times over), which was most of the CPU the `smtp` process
    spent on a message (ops/bench/email.py). Header objects are immutable."""

    def header_fetch_parse(self, name: str, value: str):
        if hasattr(value, "name"):
            return value
        if len(value) > CACHED_HEADER_CHARS:
            # the cache outlives the message: a sender's huge headers must not stay in memory
            return policy.EmailPolicy.header_fetch_parse(READ_POLICY, name, value)
        return _parsed_header(name, value)


CACHED_HEADER_CHARS = 1000  # the cache holds at most 2048 of these: a few megabytes


@lru_cache(maxsize=2048)  # a message's headers, and the few that every message shares
def _parsed_header(name: str, value: str):
    return policy.EmailPolicy.header_fetch_parse(READ_POLICY, name, value)


READ_POLICY = _ParseOnce()


def read(raw: bytes) -> Mail:
    """Raises Unreadable for a message nested deeper than the email package can follow
    (it recurses per level, some hundreds deep), else never."""
    try:
        message = BytesParser(policy=READ_POLICY).parsebytes(raw)
        mail = Mail()
        _headers(message, mail)
        mail.bounce = _is_bounce(message)
        _content(message, mail)
        mail.defects += [type(d).__name__ for part in message.walk() for d in part.defects]
    except RecursionError:
        raise Unreadable("its parts are nested too deeply to read") from None
    return mail


def content_id(raw: bytes) -> str:
    """A stand-in Message-ID for mail without one: the same bytes give the same id."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def clean(text: str) -> str:
    """Text safe to store: undecodable bytes (surrogate escapes) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "")


def _raw_values(message: EmailMessage, name: str) -> list[str]:
    """A header's values as they came (no header objects: each is decoded here)."""
    name = name.lower()
    return [charsets.FOLD.sub("", str(v)) for k, v in message.raw_items() if k.lower() == name]


def _header(message: EmailMessage, name: str, fallback: tuple[str, ...] = ()) -> str:
    """A header's text, its RFC 2047 words decoded and raw 8-bit bytes read in the
    message's charset (`fallback`), on one line."""
    values = _raw_values(message, name)
    return clean(" ".join(charsets.header(values[0], *fallback).split())) if values else ""


def _addresses(message: EmailMessage, name: str, fallback: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(display name, address) pairs, the names decoded as _header decodes text."""
    pairs = getaddresses(_raw_values(message, name))
    return [
        (clean(" ".join(charsets.header(n, *fallback).split())), clean(a).strip().lower()) for n, a in pairs if "@" in a
    ]


def _message_charsets(message: EmailMessage) -> tuple[str, ...]:
    """The first charset the message declares (its own, else its first text part's): what a
    raw 8-bit header was most likely written in."""
    for part in message.walk():
        charset = part.get_param("charset")
        if isinstance(charset, str) and charset:
            return (charset.lower(),)
    return ()


def _headers(message: EmailMessage, mail: Mail) -> None:
    fallback = _message_charsets(message)
    senders = _addresses(message, "From", fallback) or _addresses(message, "Sender", fallback)
    if senders:
        mail.sender_name, mail.sender = senders[0]
    replies = _addresses(message, "Reply-To")
    mail.reply_to = replies[0][1] if replies else ""
    mail.to = [a for _n, a in _addresses(message, "To") + _addresses(message, "Cc")]
    mail.subject = _header(message, "Subject", fallback)
    mail.date = _header(message, "Date")
    ids = MESSAGE_ID.findall(_header(message, "Message-ID"))
    mail.message_id = ids[0] if ids else ""
    thread = MESSAGE_ID.findall(_header(message, "In-Reply-To"))
    thread += reversed(MESSAGE_ID.findall(_header(message, "References")))  # nearest ancestor first
    mail.thread = list(dict.fromkeys(t for t in thread if t != mail.message_id))
    mail.auto_submitted = _is_automatic(message)
    mail.auth_results = [str(v) for v in message.get_all("Authentication-Results", [])[:20]]


def _is_automatic(message: EmailMessage) -> bool:
    """Mail never to answer automatically: RFC 3834 Auto-Submitted, Precedence bulk/junk/list,
    the vendors' X-Autoreply kin, mailing-list mail (List-Id, List-Unsubscribe: RFC 3834
    section 2) and Exchange's X-Auto-Response-Suppress asking for no auto-reply."""
    auto = _header(message, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if _header(message, "Precedence").lower() in AUTO_PRECEDENCE:
        return True
    suppress = {w.strip().lower() for w in _header(message, "X-Auto-Response-Suppress").split(",")}
    if suppress & AUTO_SUPPRESS:
        return True
    return any(_header(message, name) for name in AUTO_HEADERS + LIST_HEADERS)


def _is_bounce(message: EmailMessage) -> bool:
    if message.get_content_type() == "multipart/report":
        return message.get_param("report-type", "").lower() == "delivery-status"
    return message.get_content_type() == "message/delivery-status"


def _content(message: EmailMessage, mail: Mail) -> None:
    plain = _body_part(message, "plain")
    html = _body_part(message, "html")
    texts = []
    if plain is not None:
        texts.append(text_of(plain))
    if html is not None:
        mail.html = text_of(html)
        if plain is None:
            texts.append(html_to_text(mail.html))
    forwarded = []
    _collect(message, {id(plain), id(html)}, mail, texts, forwarded)
    mail.body = "\n\n".join(t.strip("\n") for t in texts + forwarded if t.strip())


def _body_part(message: EmailMessage, subtype: str) -> EmailMessage | None:
    try:
        return message.get_body(preferencelist=(subtype,))
    except Exception:
        return None


def _collect(part: EmailMessage, used: set[int], mail: Mail, texts: list[str], forwarded: list[str]) -> None:
    """Everything that is not the body: more inline text, attachments, nested messages."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for child in part.iter_parts():
            _collect(child, used, mail, texts, forwarded)
        return
    if id(part) in used:
        return
    content_type = part.get_content_type()
    filename = clean(part.get_filename() or "")
    if content_type == "message/rfc822":
        nested = part.get_payload(0) if part.is_multipart() else None
        if nested is not None:
            data = nested.as_bytes(policy=policy.default.clone(linesep="\r\n"))
            inner = read(data)
            forwarded.append(
                f"---------- Forwarded message ----------\nFrom: {inner.sender_name} <{inner.sender}>\n"
                f"Subject: {inner.subject}\n\n{inner.body}"
            )
            _keep(mail, Part(data, content_type, filename or _eml_name(inner.subject)))
            for inner_part in inner.attachments:
                _keep(mail, inner_part)
            mail.parts_left_out += inner.parts_left_out
        return
    if part.get_content_maintype() == "multipart" or content_type in (
        "message/delivery-status",
        "text/rfc822-headers",
    ):
        return  # a report's machine-readable parts; the bounce flag tells about them
    disposition = part.get_content_disposition()
    if content_type == "text/plain" and not filename and disposition != "attachment":
        texts.append(text_of(part))  # a body split around inline images
        return
    if len(mail.attachments) >= MAX_ATTACHMENTS:
        mail.parts_left_out += 1  # not even decoded
        return
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:
        mail.defects.append("UndecodablePart")
        return
    _keep(mail, Part(data, content_type, filename))


def _keep(mail: Mail, part: Part) -> None:
    if len(mail.attachments) < MAX_ATTACHMENTS:
        mail.attachments.append(part)
    else:
        mail.parts_left_out += 1


def _eml_name(subject: str) -> str:
    stem = re.sub(r"[^\w .-]+", "", subject).strip()[:60] or "message"
    return f"{stem}.eml"


def text_of(part: EmailMessage) -> str:
    """A text part's content in its charset (read with the charset's superset), never failing."""
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:
        data = str(part.get_payload()).encode("utf-8", "surrogateescape")
    try:
        declared = part.get_content_charset() or "utf-8"
    except Exception:  # a charset parameter the header parser cannot read
        declared = "utf-8"
    return clean(charsets.decode(data, declared)).replace("\r\n", "\n")


class _TextExtractor(HTMLParser):
    """Readable text from HTML: blocks on their own lines, list items dashed, links
    with their address; scripts, styles and the head left out."""

    BLOCKS = {"p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "ul", "ol"}
    HIDDEN = {"script", "style", "head", "title", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.href: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("\t")
        elif tag == "a":
            self.href.append(dict(attrs).get("href") or "")
        elif tag == "img" and (alt := dict(attrs).get("alt")):
            self.out.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "a" and self.href:
            href = self.href.pop()
            if href.startswith(("http://", "https://", "mailto:")) and href not in self.out[-1:]:
                self.out.append(f" <{href.removeprefix('mailto:')}>")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
