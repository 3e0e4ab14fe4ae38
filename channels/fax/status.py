"""A gateway's confirmation or failure mail for a fax we sent.

The outbound fax mail's Message-ID is recorded against our message id before it
is sent (channels.fax.outbound); a report names it (In-Reply-To, References, the
quoted original, or the `ref` group of the gateway's status pattern). Applying
it moves the message's delivery record to delivered or failed and appends the
same DeliveryStatus event as an SMS status callback; a report delivered twice,
or a late one after the fax was settled, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from channels.email.delivery import FAX_REFERENCE_PREFIX as REFERENCE_PREFIX
from channels.email.delivery import mark
from router.store import Store

# A gateway's report may settle only a fax (its Message-ID begins with REFERENCE_PREFIX),
# never an email of the tenant whose Message-ID it quotes.


@dataclass(frozen=True)
class FaxStatus:
    """A gateway's report on a fax we sent."""

    gateway: str
    status: Literal["delivered", "failed"]
    refs: tuple[str, ...]  # Message-IDs it names, nearest first
    detail: str = ""  # the failure reason the gateway gives


async def apply(store: Store, tenant: str, report: FaxStatus) -> tuple[str, str]:
    """Apply a report: ("updated", status), ("unchanged", the settled status), or
    ("unknown", "") when it names no fax of ours."""
    for ref in report.refs:
        if not ref.startswith(REFERENCE_PREFIX):
            continue
        outcome, current = await mark(store, tenant, ref, "fax", report.status, report.detail[:500])
        if outcome != "unknown":
            return outcome, current
    return "unknown", ""
