"""Retention per kind of record (router/records/retention.py) and what erasure removes
besides the archive's rows: recordings and attachments leave their messages after their
own periods, a stored file goes only when nothing else refers to it, and an erased
customer's files and web chat transcript go with them, the audit entry counting each."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from router import agents, conversations, events
from router.attachments import AttachmentStore
from router.customers import link
from router.records import erasure
from router.records.archive import Archive
from router.records.retention import kind_of
from tests.factories import World, world
from tests.router.test_records_archive import DAY_MS, DEPLOYMENT, events_entries, send_outbound
from workers import archive as archive_worker

RECORDING = {"url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1", "content_type": "audio/wav"}


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(DEPLOYMENT)
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


@pytest.fixture
def files(tmp_path: Path) -> AttachmentStore:
    return AttachmentStore(tmp_path / "attachments")


def stored_long_ago(files: AttachmentStore, ref: str) -> None:
    """As if the file had been stored a year ago (retention leaves a file stored lately)."""
    old = files.path(ref).stat().st_mtime - 365 * 86400
    os.utime(files.path(ref), (old, old))


async def conversation_with(
    w: World, address: str, attachments: list[dict], *, channel: str = "sms", metadata: dict | None = None
) -> str:
    conversation = await w.assigned_to(
        "amy", channel=channel, address=address, body="see attached", attachments=attachments, metadata=metadata or {}
    )
    await agents.reply(w.store, w.tenant, "amy", conversation, "thanks")
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
    await send_outbound(w)
    return conversation


async def archived_and_evicted(w: World) -> None:
    await archive_worker.write_batch(w.store, await events_entries(w))
    await archive_worker.evict(w.store, w.tenant.id, hot_days=7, now_ms=events.now_ms() + 8 * DAY_MS)


def archived_attachments(url: str, conversation: str) -> list[tuple[list, dict]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT attachments, metadata FROM messages WHERE conversation = %s AND kind = 'in'", (conversation,)
        ).fetchall()


def recordings(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, conversation, url, duration_s, expired_at IS NOT NULL FROM recordings ORDER BY id"
        ).fetchall()


def test_a_recording_is_a_voice_messages_audio_and_anything_else_an_attachment() -> None:
    assert kind_of("voice", RECORDING) == "recordings"
    assert kind_of("voice", {"url": "store:x", "content_type": "image/png"}) == "attachments"
    assert kind_of("telegram", {"url": "store:x", "content_type": "audio/ogg"}) == "attachments"


async def test_attachments_leave_old_messages_and_their_file_goes_once_nothing_refers_to_it(
    w: World, files: AttachmentStore, archive_url: str
) -> None:
    alone = await files.put(b"a scan of my meter")
    shared = await files.put(b"the company logo")
    old = await conversation_with(
        w, "+15551230001", [{"url": alone, "content_type": "image/png"}, {"url": shared, "content_type": "image/png"}]
    )
    await archived_and_evicted(w)
    recent = await conversation_with(w, "+15551230002", [{"url": shared, "content_type": "image/png"}])
    await archive_worker.write_batch(w.store, await events_entries(w))
    stored_long_ago(files, alone)
    stored_long_ago(files, shared)

    later = events.now_ms() + 40 * DAY_MS
    gone = await archive_worker.expire(
        w.store, w.tenant.id, retention_days=0, attachments_days=30, files=files, now_ms=later
    )

    assert gone == {"attachments": 2, "attachments_files": 1}
    [(attachments, metadata)] = archived_attachments(archive_url, old)
    assert attachments == [] and metadata["attachments_expired"] == "2"
    assert next(e.body for e in await conversations.history(w.store, w.tenant.id, old)) == "see attached"  # kept
    assert not files.path(alone).exists()
    assert files.path(shared).exists()  # the recent conversation still shows it
    assert archived_attachments(archive_url, recent)[0][0][0]["url"] == shared
    again = await archive_worker.expire(
        w.store, w.tenant.id, retention_days=0, attachments_days=30, files=files, now_ms=later
    )
    assert again == {}


async def test_a_file_stored_again_lately_is_left_for_the_next_sweep(
    w: World, files: AttachmentStore, archive_url: str
) -> None:
    ref = await files.put(b"a photo")
    await conversation_with(w, "+15551230001", [{"url": ref, "content_type": "image/jpeg"}])
    await archived_and_evicted(w)
    later = events.now_ms() + 40 * DAY_MS
    gone = await archive_worker.expire(
        w.store, w.tenant.id, retention_days=0, attachments_days=30, files=files, now_ms=later
    )
    assert gone == {"attachments": 1, "attachments_files": 0}
    assert files.path(ref).exists()  # it may belong to a message the archive has not written yet


async def test_recordings_go_after_their_period_and_other_attachments_stay(
    w: World, files: AttachmentStore, archive_url: str
) -> None:
    photo = await files.put(b"a photo")
    call = await conversation_with(
        w,
        "+15551230001",
        [RECORDING, {"url": photo, "content_type": "image/jpeg"}],
        channel="voice",
        metadata={"recording_sid": "RE1", "duration_s": "12"},
    )
    await archived_and_evicted(w)
    assert recordings(archive_url) == [("RE1", call, RECORDING["url"], 12, False)]

    later = events.now_ms() + 100 * DAY_MS
    within = await archive_worker.expire(w.store, w.tenant.id, retention_days=0, recordings_days=120, now_ms=later)
    gone = await archive_worker.expire(
        w.store, w.tenant.id, retention_days=365, recordings_days=90, attachments_days=400, files=files, now_ms=later
    )

    assert within == {}
    assert {kind: n for kind, n in gone.items() if n} == {"recordings": 1}  # its file is Twilio's, not in our store
    [(attachments, metadata)] = archived_attachments(archive_url, call)
    assert [a["url"] for a in attachments] == [photo] and metadata["recordings_expired"] == "1"
    assert recordings(archive_url) == [("RE1", call, "", 12, True)]  # listed still, its audio gone
    await archive_worker.write_batch(w.store, await events_entries(w))  # archived again: it stays expired
    assert recordings(archive_url) == [("RE1", call, "", 12, True)]
    customer = (await conversations.get(w.store, w.tenant.id, call))["customer"]
    await erasure.erase(w.store, w.tenant.id, customer, by="dpo")
    assert recordings(archive_url) == []


async def test_erasure_removes_the_customers_files_and_web_chat_transcript_and_counts_them(
    w: World, files: AttachmentStore, archive_url: str
) -> None:
    theirs = await files.put(b"my passport")
    shared = await files.put(b"the company logo")
    evicted = await conversation_with(w, "+15551230001", [{"url": theirs, "content_type": "image/png"}])
    await archived_and_evicted(w)
    hot = await conversation_with(w, "+15551230001", [{"url": shared, "content_type": "image/png"}])
    await conversation_with(w, "+15551230002", [{"url": shared, "content_type": "image/png"}])  # someone else's
    await archive_worker.write_batch(w.store, await events_entries(w))
    customer = (await conversations.get(w.store, w.tenant.id, hot))["customer"]
    await link(w.store, w.tenant.id, customer, "webchat:visitor-1")
    await w.store.redis.xadd(w.keys.webchat_history("visitor-1"), {"e": b"hello"})
    await w.store.redis.hset(w.keys.webchat_visitor("visitor-1"), "name", "Ann")

    counts = await erasure.erase(w.store, w.tenant.id, customer, by="dpo@acme.example", files=files)

    assert not files.path(theirs).exists() and files.path(shared).exists()
    assert (counts["attachments"], counts["attachments_shared_kept"], counts["webchat_transcripts"]) == (1, 1, 1)
    assert not await w.store.redis.exists(w.keys.webchat_history("visitor-1"), w.keys.webchat_visitor("visitor-1"))
    [audit] = await w.store.archive.erasures(w.tenant.id)
    assert audit["erased"] == counts
    assert "1 attachments, 1 attachments shared kept, " in erasure.describe(counts)
    assert evicted


async def test_an_emails_html_body_and_original_are_its_files_too(
    w: World, files: AttachmentStore, archive_url: str
) -> None:
    html, raw = await files.put(b"<p>my account 1234</p>"), await files.put(b"From: ann@example.com\r\n\r\nhi")
    kept = await conversation_with(w, "ann@example.com", [], channel="email", metadata={"html": html, "raw": raw})
    await archived_and_evicted(w)
    for ref in (html, raw):
        stored_long_ago(files, ref)

    later = events.now_ms() + 40 * DAY_MS
    gone = await archive_worker.expire(
        w.store, w.tenant.id, retention_days=0, attachments_days=30, files=files, now_ms=later
    )

    assert gone == {"attachments": 2, "attachments_files": 2}
    assert not files.path(html).exists() and not files.path(raw).exists()
    [(_attachments, metadata)] = archived_attachments(archive_url, kept)
    assert "html" not in metadata and "raw" not in metadata and metadata["attachments_expired"] == "2"


async def test_erasure_removes_an_emails_html_body_and_original(w: World, files: AttachmentStore) -> None:
    html, raw = await files.put(b"<p>my passport</p>"), await files.put(b"From: ann@example.com\r\n\r\npassport")
    mail = await conversation_with(w, "ann@example.com", [], channel="email", metadata={"html": html, "raw": raw})
    await archive_worker.write_batch(w.store, await events_entries(w))
    customer = (await conversations.get(w.store, w.tenant.id, mail))["customer"]

    counts = await erasure.erase(w.store, w.tenant.id, customer, by="dpo", files=files)

    assert counts["attachments"] == 2
    assert not files.path(html).exists() and not files.path(raw).exists()
