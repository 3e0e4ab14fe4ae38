"""Who may read operational detail over HTTP: the metrics and readiness's detail name
every tenant, its queues and live volumes, so on the port that providers and customers
reach they need the operator's token (OPS_TOKEN), sent as `Authorization: Bearer ...`
(Prometheus's `authorization` scrape setting, a probe's header)."""

from __future__ import annotations

import hmac

from aiohttp import web


def bearer(request: web.Request, token: str) -> bool:
    """Whether the request carries `token` as its bearer token (never true for no token)."""
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
