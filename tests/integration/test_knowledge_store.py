"""The knowledge base on a real redis-server and on Redis Cluster: the WATCHed workflow
transactions, the search's ranking transaction, and two editors racing on one version."""

from __future__ import annotations

import asyncio

from router.knowledge import articles
from router.knowledge.articles import Conflict, Draft
from router.settings import Settings
from router.store import Store, connect
from tests.factories import deployment
from tests.router.knowledge.factories import TWO_TENANTS


async def exercise(store: Store) -> None:
    config = deployment(TWO_TENANTS)
    acme, globex = config.tenant("acme"), config.tenant("globex")
    made = []
    for tenant, title, body, locale in (
        (acme, "Refunds", "Refunds take five days.", "en"),
        (acme, "如何重置密码", "在登录页面点击忘记密码。", "zh-CN"),
        (acme, "パスワードの再設定", "パスワードを忘れた場合", "ja"),
        (globex, "Refunds", "Refunds take ten days.", "en"),
    ):
        category = tenant.knowledge.categories[0].id
        draft = Draft(title=title, body=body, category=category, locale=locale)
        article = await articles.create(store, tenant, draft, actor="sue", role="supervisor")
        for step in ("submit", "publish"):
            article = await articles.move(store, tenant, article.id, step, actor="sue", role="supervisor")
        made.append(article)
    assert [a.id for a in await articles.find(store, acme, "refunding")] == [made[0].id]
    assert [a.id for a in await articles.find(store, acme, "忘记密码")] == [made[1].id]
    assert [a.id for a in await articles.find(store, acme, "パスワード")] == [made[2].id]
    assert [a.id for a in await articles.find(store, globex, "refunds")] == [made[3].id]

    target = made[0]

    def version_by(who: str) -> Draft:
        return Draft(title="Refunds", body=f"Version by {who}.", category="billing", locale="en")

    edits = [
        articles.edit(store, acme, target.id, version_by(who), actor=who, role="supervisor", version=target.version)
        for who in ("sue", "ann")
    ]
    results = await asyncio.gather(*edits, return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Article", "Conflict"]
    assert isinstance(next(r for r in results if not isinstance(r, articles.Article)), Conflict)
    stored = await articles.get(store, "acme", target.id)
    assert stored.version == target.version + 1 and stored.body in ("Version by sue.", "Version by ann.")
    assert len(await articles.history(store, "acme", target.id)) == 4


async def test_the_workflow_search_and_a_race_of_editors_on_a_real_redis(real_store: Store) -> None:
    await exercise(real_store)


async def test_the_same_on_redis_cluster(redis_cluster) -> None:
    store = connect(Settings(redis_url=redis_cluster.url, cluster=True, consumer="kb"))
    try:
        await store.redis.initialize()
        await store.redis.flushall()
        await exercise(store)
    finally:
        await store.close()
