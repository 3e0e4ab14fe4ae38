"""`contactrouter knowledge ...`: a tenant's articles from the operator's terminal.

- `list --tenant T [--status S]`: id, state, category, locale, counts and title, newest change first.
- `export --tenant T`: every article as one JSON object a line (the words, where it stands, its counts).
- `import --tenant T FILE [--publish]`: articles from a file of JSON lines (title, body, category,
  locale, format), as drafts, or published at once. Every line is checked first: one bad line
  stops the import before anything is written, and says which line and why.

Each article written is in the audit trail as the operator's (`cli:<user>`), with the
rights of an admin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from router import audit
from router.config import Deployment
from router.errors import UnknownTenant
from router.knowledge import articles
from router.knowledge.articles import STATUSES, Draft, KnowledgeError
from router.store import Store


def register(sub: argparse._SubParsersAction) -> list[str]:
    knowledge = sub.add_parser("knowledge", help="a tenant's knowledge-base articles: list, export, import")
    actions = knowledge.add_subparsers(dest="knowledge_action", required=True)
    listing = actions.add_parser("list", help="the articles, newest change first")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--status", choices=list(STATUSES))
    export = actions.add_parser("export", help="every article as JSON lines on standard output")
    export.add_argument("--tenant", required=True)
    load = actions.add_parser("import", help="articles from a file of JSON lines, as drafts (or --publish)")
    load.add_argument("--tenant", required=True)
    load.add_argument("file", type=Path)
    load.add_argument("--publish", action="store_true", help="send each for review and publish it")
    return ["knowledge"]


def read_drafts(path: Path, deployment: Deployment, tenant_id: str) -> list[Draft]:
    """Every line of the file as a checked draft; the first bad line is an error naming it."""
    kb = deployment.tenant(tenant_id).knowledge
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: {exc}") from None
    drafts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
            known = {name: fields[name] for name in ("title", "body", "category", "locale", "format") if name in fields}
            draft = msgspec.convert({"locale": kb.locales[0], "format": "markdown", **known}, Draft)
            drafts.append(draft.checked(kb))
        except (ValueError, msgspec.ValidationError) as exc:
            raise KnowledgeError(f"{path}, line {number}: {exc}") from None
    return drafts


async def command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    try:
        tenant = deployment.tenant(a.tenant)
    except UnknownTenant as exc:
        raise KnowledgeError(str(exc)) from None
    if a.knowledge_action == "list":
        statuses = (a.status,) if a.status else tuple(STATUSES)
        for article in await articles.listing(store, tenant.id, statuses=statuses):
            print(
                f"{article.id}  {STATUSES[article.status]:<9}  {article.category}  {article.locale}"
                f"  inserted {article.inserted}  helped {article.helped}  {article.title}"
            )
    elif a.knowledge_action == "export":
        for article in await articles.listing(store, tenant.id):
            sys.stdout.write(json.dumps(msgspec.to_builtins(article), ensure_ascii=False) + "\n")
    elif a.knowledge_action == "import":
        drafts = read_drafts(a.file, deployment, tenant.id)
        actor = audit.cli_actor()
        for draft in drafts:
            article = await articles.create(store, tenant, draft, actor=actor, role="admin", client="cli")
            if a.publish:
                for step in ("submit", "publish"):
                    article = await articles.move(store, tenant, article.id, step, actor=actor, role="admin",
                                                  client="cli")  # fmt: skip
            print(f"{article.id}  {STATUSES[article.status]}  {article.title}")
        print(f"imported {len(drafts)} article{'' if len(drafts) == 1 else 's'} into {tenant.id}")
