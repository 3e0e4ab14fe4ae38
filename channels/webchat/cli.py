"""`contactrouter webchat sign`: what a tenant's site puts on the widget's script tag to
name a logged-in customer, for checking an integration by hand. The tenant's identity
secret comes from the environment variable its file names, as in the web process."""

from __future__ import annotations

import argparse
import html

from channels.webchat.identity import customer_signature, identified_visitor
from router.config import Deployment
from router.errors import ContactRouterError

NEEDS_STORE = False


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
    return ["webchat"]


async def command(deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    if tenant.webchat is None or not tenant.webchat.identity_secret:
        raise WebchatCommandError(f"tenant {tenant.id} has no [tenants.webchat] identity_secret_env")
    kind, value = ("email", a.email) if a.email else ("id", a.customer_id)
    signature = customer_signature(tenant.webchat.identity_secret, kind, value)
    identified_visitor(tenant.webchat, kind, value, signature)  # refuses what the socket would refuse
    attribute = "data-customer-email" if kind == "email" else "data-customer-id"
    print(f'{attribute}="{html.escape(value)}" data-customer-signature="{signature}"')
