"""A visitor's transcript, and what their open tabs are shown live.

Every message either way is appended to the visitor's own stream (replayed to a
tab when it connects: the history survives a reload) and, in the same
transaction, to the tenant's live stream, which every web process reads to push
it to its sockets of that visitor. Typing and read marks go to the live stream
only: they matter now, not in the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from router.attachments import PREFIX as STORED
from router.events import Attachment
from router.keys import Keys
from router.store import Store, text

HISTORY_MAXLEN = 1000  # messages kept per visitor (approximately: MAXLEN ~)
HISTORY_TTL_S = 180 * 24 * 3600  # a visitor silent this long loses the transcript (the conversation stays)
REPLAY = 200  # the newest messages a connecting tab is shown
LIVE_MAXLEN = 10_000  # the live stream only bridges processes; readers are always at its end


class FileRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    content_type: str
    size: int
    ref: str = ""  # "store:<sha256>"; a tab gets a signed link instead (channels.webchat.files)


def file_refs(attachments: Iterable[Attachment]) -> tuple[FileRef, ...]:
    """A message's files as its transcript keeps them: the attachment store reference of
    a file we hold (a visitor may download it again), never any other URL."""
    return tuple(
        FileRef(
            name=a.filename or "file",
            content_type=a.content_type,
            size=a.size,
            ref=a.url if a.url.startswith(STORED) else "",
        )
        for a in attachments
    )


class ChatItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One frame a visitor's tab is shown: a message, an agent typing, a read mark, or a
    satisfaction survey and its answer (channels.webchat.survey). It is sent to the browser
    as it is (JSON); the widget shows every text as text."""

    type: Literal["message", "typing", "read", "survey", "rated"]
    id: str = ""  # the message's id (the contact's or the outbound message's)
    kind: Literal["in", "out", ""] = ""  # in: the visitor wrote it; out: an agent (or the tenant)
    text: str = ""
    at: int = 0
    client_id: str = ""  # the sending tab's own id for the message, to settle its "sending..." mark
    agent: str = ""  # the agent's display name
    files: tuple[FileRef, ...] = ()
    active: bool = False  # typing
    up_to: str = ""  # read: the agent has read the visitor's messages up to this id
    conversation: str = ""  # survey, rated: the conversation rated
    rating: int = 0  # rated: the rating that counts (the first)
    commented: bool = False  # rated: a comment came with it or after


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ChatItem).decode


def encode(item: ChatItem) -> bytes:
    return _encode(item)


def decode(data: bytes) -> ChatItem:
    return _decode(data)


async def append(store: Store, tenant: str, visitor: str, item: ChatItem, *, marker: str = "", mark: str = "") -> str:
    """Keep a message in the visitor's history and show it to their open tabs, in one
    transaction (with `marker` set to `mark` in it too); returns the history entry id."""
    keys = Keys(tenant)
    payload = encode(item)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.xadd(keys.webchat_history(visitor), {"e": payload}, maxlen=HISTORY_MAXLEN, approximate=True)
        pipe.expire(keys.webchat_history(visitor), HISTORY_TTL_S)
        pipe.xadd(keys.webchat_live, {"v": visitor, "e": payload}, maxlen=LIVE_MAXLEN, approximate=True)
        if marker:
            pipe.set(marker, mark, ex=HISTORY_TTL_S)
        results = await pipe.execute()
    return text(results[0])


async def show(store: Store, tenant: str, visitor: str, item: ChatItem) -> None:
    """Show a passing signal (typing, a read mark) to the visitor's open tabs only."""
    await store.redis.xadd(
        Keys(tenant).webchat_live, {"v": visitor, "e": encode(item)}, maxlen=LIVE_MAXLEN, approximate=True
    )


async def history(store: Store, tenant: str, visitor: str, count: int = REPLAY) -> list[ChatItem]:
    """The visitor's newest messages, oldest first."""
    rows = await store.redis.xrevrange(Keys(tenant).webchat_history(visitor), count=count)
    return [decode(fields[b"e"]) for _entry_id, fields in reversed(rows)]


async def contains(store: Store, tenant: str, visitor: str, client_id: str) -> bool:
    """Whether the visitor's history already holds the message a tab sent as client_id."""
    return any(item.client_id == client_id for item in await history(store, tenant, visitor, HISTORY_MAXLEN))
