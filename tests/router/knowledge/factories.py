"""A world with two tenants that keep knowledge bases, and articles written and published in it."""

from __future__ import annotations

from router.knowledge import articles
from tests.factories import World, world

TWO_TENANTS = """
[[tenants]]
id = "acme"
name = "Acme Energy"
brand_color = "#c2410c"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.agents]]
id = "amy"
skills = { support = 1 }

[tenants.knowledge]
locales = ["en", "zh-CN", "ja"]
categories = [
  { id = "billing", name = "Billing", public = true },
  { id = "internal", name = "Internal procedures" },
]

[[tenants]]
id = "globex"
entry = { default = "desk" }

[[tenants.queues]]
id = "desk"
target = "true"

[tenants.knowledge]
categories = [{ id = "faq", name = "FAQ", public = true }]
"""


async def kb_world(text: str = TWO_TENANTS) -> World:
    return await world(text)


async def published(
    w: World, title: str, body: str, *, tenant: str = "acme", category: str = "", locale: str = "en",
    body_format: str = "markdown",
) -> articles.Article:  # fmt: skip
    """An article written, reviewed and published by a supervisor."""
    config = w.deployment.tenant(tenant)
    category = category or config.knowledge.categories[0].id
    draft = articles.Draft(title=title, body=body, category=category, locale=locale, format=body_format)
    article = await articles.create(w.store, config, draft, actor="sue", role="supervisor")
    await articles.move(w.store, config, article.id, "submit", actor="sue", role="supervisor")
    return await articles.move(w.store, config, article.id, "publish", actor="sue", role="supervisor")
