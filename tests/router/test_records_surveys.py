"""Survey results in the archive: one row per surveyed conversation from its `survey_result`
events, the newest answer winning by its events entry, whatever order they are written in,
and gone with the conversation (retention, erasure)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from router import events
from router.records import erasure
from router.records.archive import Archive
from tests.factories import World, world
from tests.router.test_records_archive import DEPLOYMENT, closed_conversation, events_entries
from workers import archive as archive_worker


@pytest.fixture
async def w(archive_url: str) -> AsyncIterator[World]:
    made = await world(DEPLOYMENT)
    made.store.archive = await Archive.open(archive_url, size=2)
    try:
        yield made
    finally:
        await made.store.archive.close()
        await made.store.close()


def result(conversation: str, rating: int, comment: str = "") -> events.SurveyResult:
    return events.SurveyResult(
        tenant="acme", occurred_at=events.now_ms(), conversation=conversation, rating=rating, comment=comment,
        queue="support", agent="amy", low=rating <= 2, sent_at=events.now_ms() - 60_000,
    )  # fmt: skip


def rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT conversation, rating, comment, agent, low FROM survey_results").fetchall()


async def test_the_newest_answer_wins_and_a_late_comment_keeps_the_rating(w: World, archive_url: str) -> None:
    conversation = await closed_conversation(w)
    first, second = f"{events.now_ms()}-0", f"{events.now_ms() + 1}-0"
    await w.store.archive.archive(w.store, "acme", [(first, result(conversation, 2))])
    await w.store.archive.archive(w.store, "acme", [(second, result(conversation, 2, "the agent was kind"))])
    await w.store.archive.archive(w.store, "acme", [(first, result(conversation, 2))])  # delivered again: nothing
    assert rows(archive_url) == [(conversation, 2, "the agent was kind", "amy", True)]

    await archive_worker.write_batch(w.store, await events_entries(w))
    customer = (await w.conversation(conversation))["customer"]
    # as survey_answer.lua keeps a comment and a low rating to follow up
    await w.store.redis.xadd(w.keys.survey_comments, {"conversation": conversation, "comment": "the agent was kind"})
    await w.store.redis.xadd(w.keys.survey_comments, {"conversation": "01OTHER", "comment": "fine"})
    await w.store.redis.zadd(w.keys.survey_followups, {conversation: events.now_ms(), "01OTHER": events.now_ms()})

    counts = await erasure.erase(w.store, "acme", customer, by="dpo")

    assert rows(archive_url) == []
    assert counts["survey_comments"] == 1
    assert [f[b"conversation"] for _i, f in await w.store.redis.xrange(w.keys.survey_comments)] == [b"01OTHER"]
    assert await w.store.redis.zrange(w.keys.survey_followups, 0, -1) == [b"01OTHER"]
