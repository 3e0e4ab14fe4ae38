"""A tenant's articles: the record, its workflow and who may do what, its history.

The workflow is the seed's collect, review, publish and archive: a writer drafts and sends
the draft for review; a reviewer (a supervisor or an admin) publishes it or returns it to
draft; published and unfinished articles can be archived, and an archived one restored as
a draft. Who writes is the tenant's `knowledge.writers` (supervisors, or agents too); nobody
below a supervisor reviews. Agents read published articles.

An article is a hash (`Keys.kb_article`), its history a list beside it, and its search terms
an index (router/knowledge/search.py). Every change is one WATCHed transaction over the
article: the state it was judged in is the state it changes, an edit made on an older version
than the stored one is refused (nobody's words are overwritten unseen), and the article, its
history and its index change together. Each change also goes into the audit trail.
"""

from __future__ import annotations

import json
from typing import Literal, NamedTuple

import msgspec
from redis.exceptions import WatchError

from router import audit, events
from router.config import Tenant
from router.config.knowledge import KnowledgeBase
from router.errors import ContactRouterError
from router.keys import Keys
from router.knowledge import search
from router.knowledge.markup import FORMATS
from router.store import Store, text

Status = Literal["draft", "review", "published", "archived"]
STATUSES: dict[str, str] = {"draft": "Draft", "review": "In review", "published": "Published", "archived": "Archived"}
MAX_TITLE = 200
MAX_BODY = 50_000
MAX_NOTE = 500
MAX_LISTED = 500
HISTORY_KEPT = 200  # steps kept per article (the audit trail keeps every one)


class KnowledgeError(ContactRouterError, ValueError):
    """A bad article (its message says which field) or a step its workflow does not allow."""


class NotAllowed(KnowledgeError):
    """The user's role may not take this step."""


class Conflict(KnowledgeError):
    """Someone changed the article since the form was opened."""


class NotFound(KnowledgeError, LookupError):
    """No such article in this tenant."""


class Move(NamedTuple):
    sources: tuple[str, ...]
    target: str
    by: Literal["writer", "reviewer"]
    label: str  # the button
    done: str  # the history's words


MOVES: dict[str, Move] = {
    "submit": Move(("draft",), "review", "writer", "Send for review", "sent it for review"),
    "publish": Move(("review",), "published", "reviewer", "Publish", "published it"),
    "return": Move(("review",), "draft", "reviewer", "Return to draft", "returned it to draft"),
    "archive": Move(("draft", "review", "published"), "archived", "reviewer", "Archive", "archived it"),
    "restore": Move(("archived",), "draft", "reviewer", "Restore as a draft", "restored it as a draft"),
}
DONE = {"created": "wrote the first draft", "edited": "edited it", **{name: m.done for name, m in MOVES.items()}}


class Article(msgspec.Struct, kw_only=True):
    id: str
    title: str
    body: str
    format: str  # markup.FORMATS
    category: str
    locale: str
    status: str
    author: str  # the login who wrote the first draft
    created_at: int
    updated_at: int
    updated_by: str
    version: int
    helped: int = 0  # "this answered my question", from customers
    inserted: int = 0  # conversations an agent inserted it into


class Step(msgspec.Struct, kw_only=True):
    at: int
    actor: str
    action: str  # DONE's keys
    status: str  # after the step
    note: str = ""


class Draft(msgspec.Struct, kw_only=True):
    """What an author types: checked against the tenant's categories and locales."""

    title: str
    body: str
    category: str
    locale: str
    format: str = "markdown"

    def checked(self, kb: KnowledgeBase) -> Draft:
        title = " ".join(self.title.split())
        if not title:
            raise KnowledgeError("title: an article needs a title")
        if len(title) > MAX_TITLE:
            raise KnowledgeError(f"title: at most {MAX_TITLE} characters")
        if not self.body.strip():
            raise KnowledgeError("body: an article needs a body")
        if len(self.body) > MAX_BODY:
            raise KnowledgeError(f"body: at most {MAX_BODY} characters")
        if self.format not in FORMATS:
            raise KnowledgeError(f"format: one of {', '.join(FORMATS)}")
        if kb.category(self.category) is None:
            raise KnowledgeError(f"category: no category {self.category!r}")
        if self.locale not in kb.locales:
            raise KnowledgeError(f"locale: one of {', '.join(kb.locales)}")
        return Draft(title=title, body=self.body.replace("\r\n", "\n"), category=self.category,
                     locale=self.locale, format=self.format)  # fmt: skip


# --- who may do what ---


def may_write(role: str, kb: KnowledgeBase) -> bool:
    return role in ("supervisor", "admin") or kb.writers == "agent"


def may_review(role: str) -> bool:
    return role in ("supervisor", "admin")


def may_see(role: str, kb: KnowledgeBase, status: str) -> bool:
    """Agents who do not write read published articles only; writers see every state."""
    return status == "published" or may_write(role, kb)


def may_edit(role: str, kb: KnowledgeBase, status: str) -> bool:
    """Writers edit drafts; reviewers also what is in review or published (a fix goes live at once)."""
    if status == "draft":
        return may_write(role, kb)
    return status in ("review", "published") and may_review(role)


def moves_for(role: str, kb: KnowledgeBase, status: str) -> list[tuple[str, Move]]:
    """The steps this role may take from this status, in the workflow's order."""
    return [
        (name, move)
        for name, move in MOVES.items()
        if status in move.sources and (may_review(role) if move.by == "reviewer" else may_write(role, kb))
    ]


# --- reading ---


def _article(fields: dict[bytes, bytes], inserted: int) -> Article:
    values = {text(k): text(v) for k, v in fields.items()}
    for name in ("created_at", "updated_at", "version", "helped"):
        values[name] = int(values.get(name) or 0)
    values["inserted"] = inserted
    return msgspec.convert(values, Article)


async def get(store: Store, tenant: str, article_id: str) -> Article:
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.kb_article(article_id))
        pipe.scard(keys.kb_uses(article_id))
        fields, inserted = await pipe.execute()
    if not fields:
        raise NotFound(f"no article {article_id!r}")
    return _article(fields, inserted)


async def many(store: Store, tenant: str, article_ids: list[str]) -> list[Article]:
    """The articles of these ids that exist, in the order given."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        for article_id in article_ids:
            pipe.hgetall(keys.kb_article(article_id))
            pipe.scard(keys.kb_uses(article_id))
        rows = await pipe.execute()
    return [_article(fields, inserted) for fields, inserted in zip(rows[::2], rows[1::2], strict=True) if fields]


async def listing(store: Store, tenant: str, *, statuses: tuple[str, ...] = tuple(STATUSES)) -> list[Article]:
    """The tenant's articles in these states, the most recently changed first."""
    ids = [text(i) for i in await store.redis.zrevrange(Keys(tenant).kb_articles, 0, MAX_LISTED - 1)]
    return [a for a in await many(store, tenant, ids) if a.status in statuses]


async def history(store: Store, tenant: str, article_id: str) -> list[Step]:
    rows = await store.redis.lrange(Keys(tenant).kb_history(article_id), 0, -1)
    return [msgspec.json.decode(row, type=Step) for row in rows]


async def find(
    store: Store,
    tenant: Tenant,
    query: str,
    *,
    statuses: tuple[str, ...] = ("published",),
    categories: list[str] | None = None,
    locale: str = "",
    limit: int = 10,
) -> list[Article]:
    """The best matches for a query among the articles in these states (and categories,
    and locale, when given), best first."""
    ranked = [
        article_id for article_id, _score in await search.ranked(store, tenant.id, query, tenant.knowledge.locales)
    ]
    keys = Keys(tenant.id)
    async with store.redis.pipeline(transaction=False) as pipe:  # only what the filter needs, for every candidate
        for article_id in ranked:
            pipe.hmget(keys.kb_article(article_id), "status", "category", "locale")
        facets = await pipe.execute()
    wanted = []
    for article_id, (status, category, language) in zip(ranked, facets, strict=True):
        if status is None or text(status) not in statuses:
            continue
        if (categories is not None and text(category) not in categories) or (locale and text(language) != locale):
            continue
        wanted.append(article_id)
        if len(wanted) == limit:
            break
    return await many(store, tenant.id, wanted)


# --- changing ---


async def create(store: Store, tenant: Tenant, draft: Draft, *, actor: str, role: str, client: str = "") -> Article:
    """A new draft, written by `actor`."""
    if not may_write(role, tenant.knowledge):
        raise NotAllowed("your role does not write articles here")
    draft = draft.checked(tenant.knowledge)
    at = events.now_ms()
    article = Article(
        id=events.new_id(), title=draft.title, body=draft.body, format=draft.format, category=draft.category,
        locale=draft.locale, status="draft", author=actor, created_at=at, updated_at=at, updated_by=actor, version=1,
    )  # fmt: skip
    await _write(store, tenant.id, article, Step(at=at, actor=actor, action="created", status="draft"), expected=0)
    await _audit(store, tenant.id, article, "created", actor, client)
    return article


async def edit(
    store: Store, tenant: Tenant, article_id: str, draft: Draft, *, actor: str, role: str, version: int,
    client: str = "",
) -> Article:  # fmt: skip
    """A new version of the article's words, made on `version` (else Conflict)."""
    draft = draft.checked(tenant.knowledge)
    current = await get(store, tenant.id, article_id)
    if not may_edit(role, tenant.knowledge, current.status):
        raise NotAllowed(f"your role may not edit an article that is {STATUSES[current.status].lower()}")
    if current.version != version:
        raise Conflict("someone changed this article since you opened it: your text is below, theirs is saved")
    at = events.now_ms()
    article = msgspec.structs.replace(
        current, title=draft.title, body=draft.body, format=draft.format, category=draft.category,
        locale=draft.locale, updated_at=at, updated_by=actor, version=version + 1,
    )  # fmt: skip
    await _write(store, tenant.id, article, Step(at=at, actor=actor, action="edited", status=article.status),
                 expected=version)  # fmt: skip
    await _audit(store, tenant.id, article, "edited", actor, client)
    return article


async def move(
    store: Store, tenant: Tenant, article_id: str, step: str, *, actor: str, role: str, note: str = "",
    client: str = "",
) -> Article:  # fmt: skip
    """Take one step of the workflow (MOVES), if the role may and the article is where it starts."""
    if step not in MOVES:
        raise KnowledgeError(f"no step {step!r}")
    current = await get(store, tenant.id, article_id)
    if step not in dict(moves_for(role, tenant.knowledge, current.status)):
        if current.status in MOVES[step].sources:
            raise NotAllowed(f"your role may not {MOVES[step].label.lower()}")
        raise KnowledgeError(
            f"the article is {STATUSES[current.status].lower()}: it cannot {MOVES[step].label.lower()}"
        )
    at = events.now_ms()
    article = msgspec.structs.replace(
        current, status=MOVES[step].target, updated_at=at, updated_by=actor, version=current.version + 1
    )
    note = " ".join(note.split())[:MAX_NOTE]
    await _write(store, tenant.id, article, Step(at=at, actor=actor, action=step, status=article.status, note=note),
                 expected=current.version)  # fmt: skip
    await _audit(store, tenant.id, article, step, actor, client)
    return article


async def record_use(store: Store, tenant: str, article_id: str, conversation: str) -> int:
    """An agent inserted the article into a reply of a conversation: counted once per conversation."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.exists(keys.kb_article(article_id))
        pipe.sadd(keys.kb_uses(article_id), conversation)
        pipe.scard(keys.kb_uses(article_id))
        exists, _added, count = await pipe.execute()
    if not exists:
        await store.redis.srem(keys.kb_uses(article_id), conversation)
        raise NotFound(f"no article {article_id!r}")
    return int(count)


async def record_helped(store: Store, tenant: str, article_id: str, day: str) -> None:
    """A customer said the article answered their question: a contact deflected on `day` (local date)."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.kb_article(article_id), "helped", 1)
        pipe.hincrby(keys.kb_deflected, day, 1)
        await pipe.execute()


async def deflected(store: Store, tenant: str) -> dict[str, int]:
    """Contacts deflected per local date."""
    rows = await store.redis.hgetall(Keys(tenant).kb_deflected)
    return {text(day): int(count) for day, count in sorted(rows.items())}


async def _write(store: Store, tenant: str, article: Article, step: Step, *, expected: int) -> None:
    """Store the article's new version, its step and its index, if the stored version is still
    `expected` (0: no article yet); else Conflict."""
    keys = Keys(tenant)
    key = keys.kb_article(article.id)
    fields = msgspec.to_builtins(article)
    del fields["inserted"]  # counted in its own set
    fields.pop("helped")  # a counter: HINCRBY only, never overwritten by an edit
    weights = search.weights(article.title, article.body, article.locale)
    while True:
        async with store.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            stored = await pipe.hget(key, "version")
            if int(stored or 0) != expected:
                await pipe.reset()
                raise Conflict("someone changed this article meanwhile: look again")
            old_terms = [text(t) for t in await pipe.smembers(keys.kb_terms(article.id))]
            pipe.multi()
            pipe.hset(key, mapping={name: str(value) for name, value in fields.items()})
            pipe.rpush(keys.kb_history(article.id), json.dumps(msgspec.to_builtins(step), ensure_ascii=False))
            pipe.ltrim(keys.kb_history(article.id), -HISTORY_KEPT, -1)
            pipe.zadd(keys.kb_articles, {article.id: article.updated_at})
            for term in old_terms:
                if term not in weights:
                    pipe.zrem(keys.kb_term(term), article.id)
            for term, weight in weights.items():
                pipe.zadd(keys.kb_term(term), {article.id: weight})
            pipe.delete(keys.kb_terms(article.id))
            if weights:
                pipe.sadd(keys.kb_terms(article.id), *weights)
            try:
                await pipe.execute()
                return
            except WatchError:
                continue  # changed between the read and the write, or the connection dropped: judge again


async def _audit(store: Store, tenant: str, article: Article, action: str, actor: str, client: str) -> None:
    await audit.record(
        store, "article", actor=actor, client=client, tenants=(tenant,), target=article.id,
        detail=f"{DONE[action]} ({STATUSES[article.status].lower()}): {article.title}",
    )  # fmt: skip
