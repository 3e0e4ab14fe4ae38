"""Canned replies: each tenant's ready-made answers, written by its team as Jinja2
files (templates/inbox/canned/<tenant>/*.txt) and rendered in the sandbox, since
they are not our code. Fields: customer (the customer's name, or "" when nobody gave
one: write `{{ customer or "there" }}`), customer_first_name, agent_name, tenant_name."""

from __future__ import annotations

import logging
from pathlib import Path

from router import templating
from router.config import Tenant
from router.templating import sandboxed

log = logging.getLogger(__name__)


def fields(customer_name: str, agent_name: str, tenant_name: str) -> dict[str, str]:
    """What a canned reply may say: never an id or an address in place of a name."""
    return {
        "customer": customer_name,
        "customer_first_name": customer_name.split()[0] if customer_name else "",
        "agent_name": agent_name,
        "tenant_name": tenant_name,
    }


def replies_folder() -> Path:
    """templates/inbox/canned/ of the templates in use."""
    return templating.folder() / "inbox" / "canned"


def replies(tenant: Tenant, fields: dict[str, str]) -> list[dict[str, str]]:
    """The tenant's canned replies (templates/inbox/canned/<tenant>/*.txt), with the
    customer's fields filled in by the sandboxed environment (they are user-written)."""
    folder = replies_folder() / tenant.id
    if not folder.is_dir():
        return []
    env = sandboxed()
    result = []
    for path in sorted(folder.glob("*.txt")):
        try:
            rendered = env.from_string(path.read_text("utf-8")).render(fields)
            result.append({"name": path.stem.replace("_", " "), "text": rendered})
        except Exception as exc:  # a broken template is the tenant's to fix; the page still works
            log.warning("canned reply %s of %s: %s", path.name, tenant.id, exc)
    return result
