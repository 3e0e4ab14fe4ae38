"""Retention per kind of record, and the attachment store's files of what is erased.

A tenant keeps its conversations `retention_days` (Archive.expire), and may keep two kinds
of what they carry for less: calls' recordings (`[tenants.voice] recording_retention_days`:
a voice message's audio) and other attachments (`attachments_retention_days`). When its time
comes, such a file leaves its message in the archive (the message stays, its metadata
saying how many of that kind expired), and a file we store (`store:<sha256>`) is deleted
from the attachment store unless another message still refers to it: the store is shared
by content, so the same file sent twice, or by two customers, is one file. Only
conversations Redis no longer holds are touched, so the archive's copy is the only one.

A file stored again lately (its time is renewed then: router/attachments.py) is left for
the next sweep: a message that refers to it may not be archived yet.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from router.attachments import PREFIX, AttachmentStore

if TYPE_CHECKING:  # a type only: retention runs on the archive's pool
    from router.records.archive import Archive

log = logging.getLogger(__name__)

RECORDINGS, ATTACHMENTS = "recordings", "attachments"
KINDS = (RECORDINGS, ATTACHMENTS)
STORED_LATELY_S = 3600.0
BATCH = 500


def kind_of(channel: str, attachment: dict) -> str:
    """A message's file is a recording (a voice message's audio) or an attachment."""
    audio = str(attachment.get("content_type", "")).startswith("audio/")
    return RECORDINGS if channel == "voice" and audio else ATTACHMENTS


# A message's metadata that names a stored file: an email's HTML body and its whole original
# (channels/email/inbound.py). They are files of the message as its attachments are.
FILE_METADATA = ("html", "raw")
# Whether any message still refers to a stored file, as an attachment or by its metadata.
REFERRED = (
    "SELECT EXISTS (SELECT 1 FROM messages WHERE attachments @> %s"
    + "".join(" OR metadata @> %s" for _ in FILE_METADATA)
    + ")"
)


def referred_params(ref: str) -> tuple[Jsonb, ...]:
    return (Jsonb([{"url": ref}]), *(Jsonb({name: ref}) for name in FILE_METADATA))


def stored_refs(attachments: Iterable[dict]) -> set[str]:
    return {str(a.get("url", "")) for a in attachments if str(a.get("url", "")).startswith(PREFIX)}


def metadata_refs(metadata: dict) -> set[str]:
    """The stored files a message's metadata names (FILE_METADATA)."""
    return {str(metadata[name]) for name in FILE_METADATA if str(metadata.get(name, "")).startswith(PREFIX)}


async def expire_kind(
    archive: Archive, files: AttachmentStore | None, tenant: str, kind: str, before: dt.datetime
) -> dict[str, int]:
    """Take the kind's files off the tenant's messages older than `before` (of conversations only
    the archive holds) and delete the stored ones nothing else refers to; how many went."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    taken, refs, after = 0, set(), ""
    while True:
        async with archive.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT m.id, m.channel, m.attachments, m.metadata FROM messages m JOIN conversations c"
                " ON c.tenant = m.tenant AND c.id = m.conversation WHERE m.tenant = %s AND m.occurred_at < %s"
                " AND (m.attachments <> '[]' OR m.metadata ?| %s) AND c.evicted_at IS NOT NULL AND m.id > %s"
                " ORDER BY m.id LIMIT %s FOR UPDATE OF m",
                (tenant, before, list(FILE_METADATA), after, BATCH),
            )
            rows = await cur.fetchall()
            updates = []
            for message, channel, attachments, metadata in rows:
                gone = [a for a in attachments if kind_of(channel, a) == kind]
                # an email's HTML body and original go with its attachments (its text stays)
                named = metadata_refs(metadata) if kind == ATTACHMENTS else set()
                if not gone and not named:
                    continue
                kept = [a for a in attachments if kind_of(channel, a) != kind]
                noted = {k: v for k, v in metadata.items() if not (k in FILE_METADATA and v in named)}
                count = len(gone) + len(named) + int(metadata.get(f"{kind}_expired", 0) or 0)
                noted[f"{kind}_expired"] = str(count)
                updates.append((Jsonb(kept), Jsonb(noted), tenant, message))
                taken += len(gone) + len(named)
                refs |= stored_refs(gone) | named
            if updates:
                async with conn.cursor() as update:
                    await update.executemany(
                        "UPDATE messages SET attachments = %s, metadata = %s WHERE tenant = %s AND id = %s", updates
                    )
                if kind == RECORDINGS:
                    await conn.execute(
                        "UPDATE recordings SET url = '', expired_at = now() WHERE tenant = %s AND message = ANY(%s)",
                        (tenant, [message for *_rest, message in updates]),
                    )
        if len(rows) < BATCH:
            break
        after = rows[-1][0]
    removed = await remove_unreferenced(archive, files, refs, unless_stored_since=time.time() - STORED_LATELY_S)
    return {kind: taken, f"{kind}_files": removed} if taken or removed else {}


async def unreferenced(archive: Archive, refs: Iterable[str]) -> set[str]:
    """The stored files no archived message (of any tenant: the store is shared) refers to."""
    alone = set()
    async with archive.pool.connection() as conn:
        for ref in sorted(set(refs)):
            cur = await conn.execute(REFERRED, referred_params(ref))
            if not (await cur.fetchone())[0]:
                alone.add(ref)
    return alone


async def remove_unreferenced(
    archive: Archive, files: AttachmentStore | None, refs: Iterable[str], *, unless_stored_since: float | None = None
) -> int:
    """Delete the files of `refs` nothing refers to any more; how many went."""
    if files is None:
        return 0
    removed = 0
    for ref in sorted(await unreferenced(archive, refs)):
        try:
            removed += await files.remove(ref, unless_stored_since=unless_stored_since)
        except KeyError:
            continue  # not a reference of the store
        except OSError as exc:
            log.warning("could not delete %s from the attachment store: %s", ref, exc)
    return removed
