"""Preview dialling (`voice.dial_mode = "preview"`): the agent reads the next recipient's
record, the campaign's fields and its script, then presses Dial or Skip.

- `current`: the recipient the agent previews. The next one due is leased to them (as the
  worker leases a batch, campaigns/claim.lua) for PREVIEW_LEASE_MS, so two agents never
  preview the same one and a reload shows the same one; an abandoned preview goes back to
  the list when the lease ends.
- `dial`: the call is sent through the worker's own path (CampaignWorker.dial_for_agent):
  the window and caps at that moment, the send script (opt-outs, do-not-contact, disputes),
  then the dispatcher's lease (begin_send.lua) judges every rule again at the moment of the
  dial. The call is marked as the agent's and its conversation held for them, so the person
  who answers is offered to that agent (channels.voice.campaign.agents).
- `skip`: the recipient is settled as skipped with the agent's reason, counted per reason
  in the dialler's figures.
"""

from __future__ import annotations

import logging
from typing import Protocol

import msgspec

from router import scripts
from router.campaigns.model import Recipient, decode_recipient
from router.keys import Keys
from router.store import Store, text
from workers.campaigns import scripts as campaign_scripts

log = logging.getLogger(__name__)

PREVIEW_LEASE_MS = 10 * 60_000
# Why an agent skips a recipient: a fixed list, so the figures count them by reason.
SKIP_REASONS = {
    "wrong_record": "The record is wrong or incomplete",
    "already_resolved": "Already paid or resolved",
    "contact_elsewhere": "Being handled elsewhere",
    "other": "Other",
}


class Previewed(msgspec.Struct, frozen=True):
    campaign: str
    seq: int
    recipient: Recipient
    status: str  # the recipient's status when claimed ("" for a first attempt)


class Dialler(Protocol):
    async def dial_for_agent(self, tenant: str, campaign_id: str, claimed: tuple, agent: str) -> str: ...


class PreviewError(Exception):
    """The preview cannot do what was asked (gone, expired, a bad reason); says why."""


async def current(store: Store, tenant: str, campaign: str, agent: str) -> Previewed | None:
    """The recipient `agent` previews now, leasing the next due one if they have none;
    None when nobody is due."""
    keys = Keys(tenant)
    held = await store.redis.get(keys.campaign_preview(campaign, agent))
    if held is not None:
        found = await _read(store, keys, campaign, int(held))
        if found is not None:
            return found
    claimed = await campaign_scripts.claim(store, tenant, campaign, count=1, lease_ms=PREVIEW_LEASE_MS)
    if not claimed.seqs:
        return None
    seq = int(claimed.seqs[0])
    await store.redis.set(keys.campaign_preview(campaign, agent), seq, px=PREVIEW_LEASE_MS)
    return await _read(store, keys, campaign, seq)


async def dial(worker: Dialler, store: Store, tenant: str, campaign: str, agent: str, seq: int) -> str:
    """Dial the previewed recipient for `agent`; the recipient's status after it (`sent:...`
    when the call is queued, `suppressed:...` or `skipped:...` when it may not be, or
    `later:<ms>` when the window or a cap puts it off until then)."""
    keys = Keys(tenant)
    previewed = await _held(store, keys, campaign, agent, seq)
    blob = await store.redis.hget(keys.campaign_audience(campaign), str(seq))
    status = await worker.dial_for_agent(
        tenant, campaign, (seq, blob or b"", previewed.status.encode()), agent
    )
    if status == previewed.status:  # put off: back in the list for when it is allowed
        status = f"later:{int(await store.redis.zscore(keys.campaign_due(campaign), str(seq)) or 0)}"
    await store.redis.delete(keys.campaign_preview(campaign, agent))
    log.info("campaign %s of %s: agent %s dialled recipient %s: %s", campaign, tenant, agent, seq, status)
    return status


async def skip(store: Store, tenant: str, campaign: str, agent: str, seq: int, reason: str) -> None:
    """Settle the previewed recipient as skipped with the agent's reason, and count it."""
    if reason not in SKIP_REASONS:
        raise PreviewError(f"choose why you skip ({', '.join(SKIP_REASONS)})")
    keys = Keys(tenant)
    await _held(store, keys, campaign, agent, seq)
    entry = campaign_scripts.Settlement(seq, "final", f"skipped:preview:{reason}", "skipped")
    [settled] = await scripts.run_pipelined(
        store.redis, [campaign_scripts.settle_call(store, tenant, campaign, [entry])]
    )
    if isinstance(settled, Exception):
        raise settled
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.campaign_dial_figures(campaign), "preview_skipped", 1)
        pipe.hincrby(keys.campaign_dial_figures(campaign), f"preview_skipped:{reason}", 1)
        pipe.delete(keys.campaign_preview(campaign, agent))
        await pipe.execute()
    log.info("campaign %s of %s: agent %s skipped recipient %s (%s)", campaign, tenant, agent, seq, reason)


async def _held(store: Store, keys: Keys, campaign: str, agent: str, seq: int) -> Previewed:
    held = await store.redis.get(keys.campaign_preview(campaign, agent))
    if held is None or int(held) != seq:
        raise PreviewError("this preview has expired: read the next recipient")
    found = await _read(store, keys, campaign, seq)
    if found is None:
        raise PreviewError("this recipient is no longer in the campaign")
    return found


async def _read(store: Store, keys: Keys, campaign: str, seq: int) -> Previewed | None:
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.campaign_audience(campaign), str(seq))
        pipe.hget(keys.campaign_status(campaign), str(seq))
        blob, status = await pipe.execute()
    if not blob:
        return None
    return Previewed(campaign, seq, decode_recipient(blob), text(status or b""))
