"""May we contact this person? The question every unsolicited message asks first.

Campaigns ask it inside their own scripts (campaigns/send.lua when a message is queued,
campaigns/begin_send.lua when it leaves); anything else that writes to customers on its
own initiative (a satisfaction survey, a reminder) asks it here, and gets the same
answer: one rule, lib.lua's contact_refusal, run in one script (contact_refusal.lua).

What it weighs, for the tenant's `opt_out_scope`:
- "person" (the default, the safe side: consent revoked "by any reasonable means" covers
  every channel): an opt-out of any channel by any of the person's identities (the
  customer the address belongs to, and every address linked to them), or any of their
  addresses on the do-not-contact list, refuses every channel;
- "channel": only the address's own opt-out of that channel, and its own do-not-contact
  entry;
- either way, a free-text revocation ("please stop texting me") that an agent has not yet
  confirmed or dismissed holds every channel of the person (router/revocations.py).

Replies to a customer who wrote in are not asked about: they answer the customer.
"""

from __future__ import annotations

from router import atomic
from router.config import Tenant
from router.customers import ADDRESS_KIND, identity
from router.keys import Keys
from router.store import Store, text

# Why a message may not go: the reasons contact_refusal gives.
REASONS = {
    "opted_out": "the person opted out",
    "do_not_contact": "the person is on the do-not-contact list",
    "revocation_pending": "the person may have revoked consent: an agent has yet to confirm or dismiss it",
}


async def refusal(store: Store, tenant: Tenant, channel: str, address: str, *, other: str = "") -> str | None:
    """Why nothing unsolicited may go to `address` (normalised, as router.customers.normalise
    makes it) on `channel` for the tenant now (a key of REASONS), or None when it may.
    `other` is another identity the caller knows to be the same person's ("email:a@b")."""
    return await atomic.contact_refusal(
        store,
        tenant.id,
        scope=tenant.opt_out_scope,
        channel=channel,
        ident=identity(channel, address),
        other_ident=other,
    )


async def may_contact(store: Store, tenant: Tenant, channel: str, address: str) -> bool:
    """Whether an unsolicited message (a survey) may go to `address` on `channel` now."""
    return await refusal(store, tenant, channel, address) is None


async def customer_refusal(store: Store, tenant: Tenant, customer: str, channel: str) -> str | None:
    """Why nothing unsolicited may reach a customer on `channel` (a REASONS key, or
    "no_address" when they have no identity that channel reaches), or None when it may."""
    kind = ADDRESS_KIND[channel]
    fields = await store.redis.hkeys(Keys(tenant.id).customer(customer))
    idents = sorted(text(f).removeprefix("ident:") for f in fields if text(f).startswith("ident:"))
    own = [ident for ident in idents if ident.startswith(f"{kind}:")]
    if not own:
        return "no_address"
    # the customer's first address on the channel; under "person" the rule reads every other one
    return await atomic.contact_refusal(
        store, tenant.id, scope=tenant.opt_out_scope, channel=channel, ident=own[0], other_ident=""
    )
