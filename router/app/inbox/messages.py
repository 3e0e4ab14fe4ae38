"""Each history entry as its channel needs it on the conversation page.

Customer text is only ever passed to the autoescaped templates as text. The one
exception is an email's HTML body, which is shown after the email channel's
sanitiser (nh3, an allow-list) has kept only harmless markup: no scripts, no event
handlers, no styles, no remote images (a tracking pixel would tell the sender the
mail was read).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path

from markupsafe import Markup

from channels.email.sanitise import safe_html
from router import events, names
from router.app.inbox.listing import CHANNEL_ICONS

log = logging.getLogger(__name__)

STORE_PREFIX = "store:"
# Shown in the browser rather than downloaded: formats the browser renders without running anything.
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # shown in the page as pictures
INLINE_TYPES = {"application/pdf", "audio/mpeg", "audio/wav", "audio/x-wav", *IMAGE_TYPES}
MAX_HTML_BYTES = 2 * 1024 * 1024
RAW_TYPE = "message/rfc822"
MAX_RAW_SHOWN = 1024 * 1024  # bytes of an original message shown in the page; the whole file downloads


def file_headers(content_type: str, inline: bool) -> dict[str, str]:
    """Headers for a customer's file sent to an agent's browser: shown when `inline`, else a
    download, and sandboxed either way so nothing in it runs with the inbox's origin."""
    return {
        "Content-Type": content_type if inline else "application/octet-stream",
        "Content-Disposition": "inline" if inline else "attachment",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }


def sanitise_html(html: str) -> Markup:
    """An email's HTML made inert: safe to put into the page as markup."""
    return Markup(safe_html(html))


def file_ref(url: str) -> str:
    """The attachment store digest of a "store:<sha256>" url, or ""."""
    digest = url.removeprefix(STORE_PREFIX) if url.startswith(STORE_PREFIX) else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else ""


def refs_of(entries: list[events.HistoryEntry]) -> dict[str, str]:
    """Every stored file a conversation's history references: digest -> content type."""
    refs = {}
    for entry in entries:
        for attachment in entry.attachments:
            if digest := file_ref(attachment.url):
                refs[digest] = attachment.content_type
        if digest := file_ref(entry.metadata.get("html", "")):
            refs.setdefault(digest, "text/html")
        if digest := file_ref(entry.metadata.get("raw", "")):
            refs.setdefault(digest, RAW_TYPE)  # downloaded, never shown: INLINE_TYPES has no message/rfc822
    return refs


def provider_media(entries: list[events.HistoryEntry]) -> list[events.Attachment]:
    """The provider-hosted files of a history (recordings, MMS media), in order: the n of
    /media/{n}, the only URLs the inbox fetches for it (router.app.inbox.media)."""
    return [a for e in entries for a in e.attachments if a.url.startswith(("https://", "http://"))]


def media_links(entries: list[events.HistoryEntry], media_url: str) -> dict[str, str]:
    """Each provider URL of a history -> its address behind the login."""
    return {a.url: f"{media_url}/{n}" for n, a in enumerate(provider_media(entries))}


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_html(root: Path | None, digest: str) -> str | None:
    if root is None or not digest:
        return None
    path = root / digest[:2] / digest
    try:
        if path.stat().st_size > MAX_HTML_BYTES:
            return None
        return path.read_text("utf-8", errors="replace")
    except OSError:
        log.warning("email HTML %s is missing from the attachment store", digest)
        return None


def view(
    entry: events.HistoryEntry,
    files_url: str,
    attachment_root: Path | None,
    media: dict[str, str] | None = None,
    agent_names: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """One entry for the template: text stays text; links point only at our own routes
    behind the login (see attachment_views)."""
    html = _read_html(attachment_root, file_ref(entry.metadata.get("html", "")))
    return {
        **live_view(entry, agent_names),
        "occurred_at": entry.occurred_at,
        "html": sanitise_html(html) if html is not None else None,
        "attachments": attachment_views(entry, files_url, media),
        "original": f"{files_url.removesuffix('/files')}/original/{entry.id}" if original_ref(entry) else "",
    }


def original_ref(entry: events.HistoryEntry) -> str:
    """The attachment store digest of a mail as it came (headers and all), or ""."""
    return file_ref(entry.metadata.get("raw", "")) if entry.kind == "in" else ""


def read_original(root: Path, digest: str) -> tuple[str, int]:
    """An original message for the page: its first MAX_RAW_SHOWN bytes as text (8-bit
    bytes a header should not hold are shown as U+FFFD, never interpreted), and its size."""
    path = root / digest[:2] / digest
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(MAX_RAW_SHOWN)
    return head.decode("utf-8", errors="replace"), size


def attachment_views(
    entry: events.HistoryEntry, files_url: str, media: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """An entry's files for the page and the live JSON, each linked only at our own routes
    behind the login: stored files, and provider media (`media`, from media_links) that the
    web process fetches with the tenant's credentials. Pictures are shown as pictures."""
    views = []
    for attachment in entry.attachments:
        digest = file_ref(attachment.url)
        href = f"{files_url}/{digest}" if digest else (media or {}).get(attachment.url, "")
        views.append(
            {
                "name": attachment.filename or attachment.content_type,
                "href": href,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "is_image": bool(href) and attachment.content_type in IMAGE_TYPES,
                "is_pdf": attachment.content_type == "application/pdf",
                "is_audio": attachment.content_type.startswith("audio/"),
            }
        )
    return views


# Where messages stored before HistoryEntry.name kept the name they were sent under.
SENDER_NAME_FIELDS = ("from_name", "telegram_name", "prechat_name")


def sender(entry: events.HistoryEntry) -> str:
    """Who a message is from or to, for people: the name it came with and the address
    (formatted), "Ana Lima <ana@example.com>"; never a visitor's or chat's id."""
    name = entry.name or names.clean(next((entry.metadata[f] for f in SENDER_NAME_FIELDS if entry.metadata.get(f)), ""))
    address = names.formatted_address(entry.channel, entry.address)
    if name and address:
        return f"{name} <{address}>"
    return name or address or names.display({}, entry.channel, entry.address)


def live_view(entry: events.HistoryEntry, agent_names: Mapping[str, str] | None = None) -> dict[str, object]:
    """An entry for the live JSON: text only (the page shows formatted mail on reload); `view`
    adds the rest to it. `address` and `agent` are for people: names, not ids."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "channel": entry.channel,
        "icon": CHANNEL_ICONS.get(entry.channel, "•"),
        "contact_kind": entry.contact_kind,
        "when": _when(entry.occurred_at),
        "at": entry.occurred_at,  # epoch ms: a page writes it in the reader's locale and the tenant's zone
        "body": entry.body,
        "subject": entry.subject,
        "address": sender(entry),
        "agent": (agent_names or {}).get(entry.agent, entry.agent),
    }
