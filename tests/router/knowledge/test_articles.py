"""The article workflow: draft, review, published, archived; who may take each step; the
history and the audit trail; tenants kept apart."""

from __future__ import annotations

import itertools

import pytest

from router import audit
from router.knowledge import articles
from router.knowledge.articles import Conflict, Draft, KnowledgeError, NotAllowed, NotFound
from tests.router.knowledge.factories import TWO_TENANTS, kb_world, published


def draft(title: str = "How to read your meter", body: str = "Open the cupboard.") -> Draft:
    return Draft(title=title, body=body, category="billing", locale="en")


async def test_an_article_goes_from_draft_through_review_to_published_and_archived_with_its_history() -> None:
    w = await kb_world()
    acme = w.tenant
    article = await articles.create(w.store, acme, draft(), actor="sue", role="supervisor")
    assert (article.status, article.version, article.author) == ("draft", 1, "sue")
    await articles.move(w.store, acme, article.id, "submit", actor="sue", role="supervisor")
    await articles.move(w.store, acme, article.id, "return", actor="ann", role="admin", note="add a  photo")
    await articles.move(w.store, acme, article.id, "submit", actor="sue", role="supervisor")
    await articles.move(w.store, acme, article.id, "publish", actor="ann", role="admin")
    archived = await articles.move(w.store, acme, article.id, "archive", actor="ann", role="admin")
    assert (archived.status, archived.version) == ("archived", 6)

    steps = await articles.history(w.store, "acme", article.id)
    assert [(s.actor, s.action, s.status) for s in steps] == [
        ("sue", "created", "draft"),
        ("sue", "submit", "review"),
        ("ann", "return", "draft"),
        ("sue", "submit", "review"),
        ("ann", "publish", "published"),
        ("ann", "archive", "archived"),
    ]
    assert steps[2].note == "add a photo"
    assert all(a.at <= b.at for a, b in itertools.pairwise(steps))

    trail, _more = await audit.read(w.store, tenant="acme", action="article")
    assert [e.actor for _id, e in reversed(trail)] == ["sue", "sue", "ann", "sue", "ann", "ann"]
    assert trail[0][1].target == article.id and "archived it" in trail[0][1].detail
    assert not (await audit.read(w.store, tenant="globex", action="article"))[0]


async def test_an_agent_cannot_write_review_or_publish_unless_the_tenant_lets_agents_write() -> None:
    w = await kb_world()
    acme = w.tenant
    with pytest.raises(NotAllowed):
        await articles.create(w.store, acme, draft(), actor="amy", role="agent")
    article = await articles.create(w.store, acme, draft(), actor="sue", role="supervisor")
    with pytest.raises(NotAllowed):
        await articles.move(w.store, acme, article.id, "submit", actor="amy", role="agent")
    await articles.move(w.store, acme, article.id, "submit", actor="sue", role="supervisor")
    with pytest.raises(NotAllowed):
        await articles.move(w.store, acme, article.id, "publish", actor="amy", role="agent")
    assert (await articles.get(w.store, "acme", article.id)).status == "review"


async def test_agents_who_may_write_draft_and_submit_but_still_never_publish() -> None:
    w = await kb_world(TWO_TENANTS.replace('locales = ["en"', 'writers = "agent"\nlocales = ["en"'))
    writers, kb = w.tenant, w.tenant.knowledge
    assert kb.writers == "agent"
    article = await articles.create(w.store, writers, draft(), actor="amy", role="agent")
    await articles.move(w.store, writers, article.id, "submit", actor="amy", role="agent")
    with pytest.raises(NotAllowed):
        await articles.move(w.store, writers, article.id, "publish", actor="amy", role="agent")
    with pytest.raises(NotAllowed):  # in review: only a reviewer edits it now
        await articles.edit(w.store, writers, article.id, draft(), actor="amy", role="agent", version=2)
    assert [name for name, _m in articles.moves_for("agent", writers.knowledge, "review")] == []
    assert [name for name, _m in articles.moves_for("supervisor", kb, "review")] == ["publish", "return", "archive"]


async def test_a_step_the_workflow_does_not_have_from_this_state_is_refused_and_changes_nothing() -> None:
    w = await kb_world()
    article = await articles.create(w.store, w.tenant, draft(), actor="sue", role="supervisor")
    with pytest.raises(KnowledgeError, match="cannot publish"):
        await articles.move(w.store, w.tenant, article.id, "publish", actor="sue", role="supervisor")
    with pytest.raises(KnowledgeError, match="no step"):
        await articles.move(w.store, w.tenant, article.id, "delete", actor="sue", role="supervisor")
    assert (await articles.get(w.store, "acme", article.id)).version == 1


async def test_an_edit_made_on_an_older_version_is_refused_so_nobody_overwrites_unseen() -> None:
    w = await kb_world()
    article = await articles.create(w.store, w.tenant, draft(), actor="sue", role="supervisor")
    first = await articles.edit(w.store, w.tenant, article.id, draft(body="Version two."), actor="sue",
                                role="supervisor", version=1)  # fmt: skip
    assert (first.version, first.body) == (2, "Version two.")
    with pytest.raises(Conflict):
        await articles.edit(w.store, w.tenant, article.id, draft(body="Stale."), actor="ann", role="admin", version=1)
    assert (await articles.get(w.store, "acme", article.id)).body == "Version two."


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"title": "  "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"body": ""}, "body"),
        ({"category": "nope"}, "category"),
        ({"locale": "fr"}, "locale"),
        ({"format": "html"}, "format"),
    ],
)
async def test_a_bad_field_is_refused_with_its_name_and_nothing_is_stored(change: dict, problem: str) -> None:
    w = await kb_world()
    fields = {"title": "Meter", "body": "Read it.", "category": "billing", "locale": "en", **change}
    with pytest.raises(KnowledgeError, match=f"^{problem}:"):
        await articles.create(w.store, w.tenant, Draft(**fields), actor="sue", role="supervisor")
    assert await articles.listing(w.store, "acme") == []


async def test_another_tenants_articles_are_never_found_listed_or_read() -> None:
    w = await kb_world()
    globex = w.deployment.tenant("globex")
    theirs = await published(w, "Refund policy", "Refunds take five days.", tenant="globex")
    ours = await published(w, "Refund policy", "Refunds take ten days.")
    assert [a.id for a in await articles.listing(w.store, "acme")] == [ours.id]
    assert [a.id for a in await articles.find(w.store, w.tenant, "refund")] == [ours.id]
    assert [a.id for a in await articles.find(w.store, globex, "refund")] == [theirs.id]
    with pytest.raises(NotFound):
        await articles.get(w.store, "acme", theirs.id)
    with pytest.raises(NotFound):
        await articles.move(w.store, w.tenant, theirs.id, "archive", actor="sue", role="supervisor")


async def test_insertions_count_once_per_conversation_and_help_counts_a_deflected_contact() -> None:
    w = await kb_world()
    article = await published(w, "Meter", "Read it.")
    assert await articles.record_use(w.store, "acme", article.id, "c1") == 1
    assert await articles.record_use(w.store, "acme", article.id, "c1") == 1
    assert await articles.record_use(w.store, "acme", article.id, "c2") == 2
    with pytest.raises(NotFound):
        await articles.record_use(w.store, "acme", "01NOSUCHARTICLE", "c1")
    await articles.record_helped(w.store, "acme", article.id, "2026-12-08")
    await articles.record_helped(w.store, "acme", article.id, "2026-12-08")
    stored = await articles.get(w.store, "acme", article.id)
    assert (stored.inserted, stored.helped) == (2, 2)
    edited = await articles.edit(w.store, w.tenant, article.id, draft(body="New."), actor="sue", role="supervisor",
                                 version=stored.version)  # fmt: skip
    assert (edited.helped, edited.inserted) == (2, 2)  # an edit keeps the counters
    assert await articles.deflected(w.store, "acme") == {"2026-12-08": 2}
    assert await articles.deflected(w.store, "globex") == {}
