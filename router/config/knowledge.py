"""A tenant's knowledge base section: its categories (which of them customers see), the
locales its articles are written in, and who may write them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from router.config.fields import FieldError, Name

# A locale as BCP 47 writes its common forms: "en", "zh-CN", "ja", "pt-BR".
Locale = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="a locale such as en or zh-CN")
]


class KnowledgeCategory(msgspec.Struct, forbid_unknown_fields=True):
    id: Name
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    # published articles of a public category are on the tenant's help page and suggested in its chat widget
    public: bool = False


def _general() -> list[KnowledgeCategory]:
    return [KnowledgeCategory(id="general", name="General")]


class KnowledgeBase(msgspec.Struct, forbid_unknown_fields=True):
    categories: list[KnowledgeCategory] = msgspec.field(default_factory=_general)
    locales: list[Locale] = msgspec.field(default_factory=lambda: ["en"])  # the first is the default
    # the least role that writes articles and sends them for review; reviewing, publishing and
    # archiving stay with supervisors and admins whatever this says
    writers: Literal["agent", "supervisor"] = "supervisor"

    def __post_init__(self) -> None:
        if not self.categories:
            raise FieldError("categories", "the knowledge base needs at least one category")
        if len({c.id for c in self.categories}) != len(self.categories):
            raise FieldError("categories", "category ids must be unique")
        if not self.locales:
            raise FieldError("locales", "the knowledge base needs at least one locale")
        if len(set(self.locales)) != len(self.locales):
            raise FieldError("locales", "each locale once")

    def category(self, category_id: str) -> KnowledgeCategory | None:
        for category in self.categories:
            if category.id == category_id:
                return category
        return None

    @property
    def public_categories(self) -> list[str]:
        return [c.id for c in self.categories if c.public]
