"""The product's own errors: one root, so a caller can tell a refused request or a
bad configuration (shown as one line) from a bug (a traceback).

Each module keeps the error it raises beside its code (`router.agents.AgentError`,
`router.campaigns.model.CampaignError`, ...); they all derive from
`ContactRouterError`. Most also stay ValueErrors, as they were, for the callers that
catch a ValueError around a parse.
"""

from __future__ import annotations

from collections.abc import Iterable


class ContactRouterError(Exception):
    """A request the product refuses or a configuration it cannot run with; the
    message is written for the operator or agent who made it."""


class ConfigError(ContactRouterError, ValueError):
    """The deployment's configuration (its file or the environment) is unusable; the
    message names the field or the variable."""


class UnknownTenant(ContactRouterError, LookupError):
    """The deployment has no tenant of this id (a typing mistake, or one since removed)."""

    def __init__(self, tenant_id: str, known: Iterable[str]) -> None:
        self.tenant_id = tenant_id
        self.known = list(known)
        super().__init__(f"no tenant {tenant_id!r} (known: {', '.join(self.known) or 'none'})")
