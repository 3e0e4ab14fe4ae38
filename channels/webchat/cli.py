"""`contactrouter webchat sign`: what a tenant's site puts on the widget's script tag to
name a logged-in customer, for checking an integration by hand. The tenant's identity
secret comes from the environment variable its file names, as in the web process.
`contactrouter webchat rotate-secret`: a new store-kept secret for visitor tokens (when
WEBCHAT_SECRET is not set), the old one still accepted while visitors come back."""

from __future__ import annotations

import argparse
import html
from typing import Any

from channels.webchat.identity import TOKEN_TTL_S, customer_signature, identified_visitor, rotate_secret
from router.config import Deployment
from router.errors import ContactRouterError


def NEEDS_STORE(a: argparse.Namespace) -> bool:  # the name router/app/cli.py asks modules for
    return a.webchat_action == "rotate-secret"


class WebchatCommandError(ContactRouterError, ValueError):
    """Shown to the operator as one line (the CLI prints a ContactRouterError, exit status 2)."""


def register(sub: argparse._SubParsersAction) -> list[str]:
    webchat = sub.add_parser("webchat", help="web chat: sign a customer's identity for the widget")
    actions = webchat.add_subparsers(dest="webchat_action", required=True)
    sign = actions.add_parser("sign", help="the script tag attributes naming a customer (email or id)")
    sign.add_argument("--tenant", required=True)
    who = sign.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--id", dest="customer_id")
    actions.add_parser(
        "rotate-secret", help="a new store-kept secret for visitor tokens; the old one still verifies for 90 days"
    )
    return ["webchat"]


async def command(*args: Any) -> None:
    """Called as (deployment, a) for `sign`, as (store, deployment, a) for `rotate-secret`."""
    a: argparse.Namespace = args[-1]
    if a.webchat_action == "rotate-secret":
        await rotate_secret(args[0])
        days = TOKEN_TTL_S // 86400
        print(
            "rotated: web processes sign with the new secret from their next start; "
            f"tokens signed with the old one are accepted for {days} days (a visitor's is re-signed when they return)"
        )
        return
    _sign(args[0], a)


def _sign(deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    if tenant.webchat is None or not tenant.webchat.identity_secret:
        raise WebchatCommandError(f"tenant {tenant.id} has no [tenants.webchat] identity_secret_env")
    kind, value = ("email", a.email) if a.email else ("id", a.customer_id)
    signature = customer_signature(tenant.webchat.identity_secret, kind, value)
    identified_visitor(tenant.webchat, kind, value, signature)  # refuses what the socket would refuse
    attribute = "data-customer-email" if kind == "email" else "data-customer-id"
    print(f'{attribute}="{html.escape(value)}" data-customer-signature="{signature}"')
