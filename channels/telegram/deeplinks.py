"""`/start` deep links: t.me/BOT?start=PAYLOAD opens the bot and sends "/start PAYLOAD".

A payload can pick the queue (the tenant lists which payload routes where in
`[tenants.telegram] start_queues`) or carry a customer's identity, so a customer
who follows a link from an email or SMS joins their own history. Anyone can make
a t.me link with any payload, so an identity payload is signed with the tenant's
link key (HMAC-SHA256): only links the tenant issued link a chat to a customer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from router.config import Tenant

# "/start", "/start@AcmeBot", "/start PAYLOAD"; Telegram caps payloads at 64 of [A-Za-z0-9_-].
START = re.compile(r"/start(?:@\w+)?(?:\s+(\S*))?\s*", re.ASCII)
PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# "c" + the customer id (a ULID) + 22 characters of signature (132 bits)
CUSTOMER = re.compile(r"c([0-9A-HJKMNP-TV-Z]{26})([A-Za-z0-9_-]{22})", re.ASCII)


@dataclass(frozen=True, slots=True)
class Start:
    payload: str  # as sent ("" for a plain /start)
    queue: str = ""  # the queue the payload routes to
    customer: str = ""  # the customer a signed payload names
    forged: bool = False  # an identity payload whose signature did not match


def parse_start(text: str) -> str | None:
    """The payload of a /start command ("" for none), or None when the text is not one."""
    match = START.fullmatch(text.strip())
    if match is None:
        return None
    return match.group(1) or ""


def resolve(tenant: Tenant, payload: str) -> Start:
    """What a /start payload asks for on this tenant; unknown payloads ask for nothing."""
    if not payload or not PAYLOAD.fullmatch(payload) or tenant.telegram is None:
        return Start(payload[:64])
    queue = tenant.telegram.start_queues.get(payload, "")
    if queue:
        return Start(payload, queue=queue)
    match = CUSTOMER.fullmatch(payload)
    keys = tenant.telegram.link_ring()
    if match is None or not keys:
        return Start(payload)
    customer, signature = match.groups()
    # links signed with an older key (in mail already sent) pass while it is still listed
    if not keys.any(lambda key: hmac.compare_digest(signature, sign(key, tenant.id, customer))):
        return Start(payload, forged=True)
    return Start(payload, customer=customer)


def customer_payload(tenant: Tenant, customer: str) -> str:
    """The signed /start payload that links whoever follows it to this customer."""
    if tenant.telegram is None or not tenant.telegram.link_key:
        raise ValueError(f"tenant {tenant.id} has no Telegram link key (`[tenants.telegram] link_key_env`)")
    if not re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", customer):
        raise ValueError(f"{customer!r} is not a customer id")
    return f"c{customer}{sign(tenant.telegram.link_key, tenant.id, customer)}"


def sign(key: str, tenant: str, customer: str) -> str:
    digest = hmac.new(key.encode(), f"telegram-start:{tenant}:{customer}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]
