"""The bundled demo comes with a few published help articles, once, whatever `up` is run again on."""

from __future__ import annotations

from router import queues
from router.app.embedded import DEMO_ARTICLES, load_demo
from router.config import load_deployment
from router.knowledge import articles
from router.settings import Settings
from router.store import connect


async def test_the_demo_seeds_its_articles_published_once_and_they_are_searchable() -> None:
    demo = load_deployment(None)
    store = connect(Settings())
    for tenant in demo.tenants:
        await queues.apply_tenant(store, tenant)
    await load_demo(store, demo)
    await load_demo(store, demo)
    acme = demo.tenant("acme")
    seeded = await articles.listing(store, "acme")
    assert len(seeded) == len(DEMO_ARTICLES) and {a.status for a in seeded} == {"published"}
    assert [a.title for a in await articles.find(store, acme, "支付")] == ["如何支付账单"]
    assert acme.knowledge.public_categories == ["meter", "billing"]
