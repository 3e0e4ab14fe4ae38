"""Campaign results from the tenants' events streams (consumer group `campaigns`).

- A delivery report of a campaign message (dispatch, provider status callbacks)
  counts it delivered, or schedules the next attempt by the retry policy (on the
  fallback channel when there is one) or counts it failed.
- A customer's message in a campaign conversation counts the recipient replied
  (once); router/lua/intake.lua has already routed it to the campaign's queue.
- An agent closing a campaign conversation records the disposition (converted,
  promise to pay, paid, disputed...), opens a dispute where one was raised, and
  starts the collections quiet period after a conversation about the debt.

Every effect is idempotent (a flag per recipient, a status that only moves on
from the attempt it names), so a redelivered event changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import decimal
import json
import logging
from typing import TextIO

import msgspec

from router import bus, events
from router.agents import PROMISE
from router.campaigns import compliance, registry
from router.campaigns.model import CONVERTED, DISPOSITIONS, Campaign, CampaignError, decode_recipient
from router.config import Deployment
from router.keys import CAMPAIGNS_GROUP, Keys, shard_of
from router.settings import Settings
from router.store import Store, text
from workers.campaigns import agent_figures
from workers.campaigns import scripts as campaign_scripts
from workers.campaigns.audience import address_for
from workers.campaigns.ids import parse_conversation_id, parse_message_id, variant_prefix

log = logging.getLogger(__name__)

DELIVERED = frozenset({"delivered", "read"})
FAILED = frozenset({"failed", "refused", "undelivered", "unknown", "busy", "no-answer", "canceled"})
# An answering machine took a campaign call (channels.voice.campaign): not reached while
# the campaign's voice policy retries machines, else delivered if a message was left.
MACHINE = "machine"


class Results:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._campaigns: dict[tuple[str, str], Campaign] = {}

    async def _campaign(self, tenant: str, campaign_id: str) -> Campaign | None:
        found = self._campaigns.get((tenant, campaign_id))
        if found is None:
            try:
                found, _state = await registry.load(self.store, tenant, campaign_id)
            except CampaignError:
                return None
            self._campaigns[(tenant, campaign_id)] = found
        return found

    async def handle(self, entries: list[bus.Entry]) -> set[bus.Entry]:
        done = set()
        for entry in entries:
            try:
                event = events.decode_state(entry.payload)
            except (msgspec.ValidationError, msgspec.DecodeError):
                done.add(entry)  # not ours to judge: other readers of the stream report it
                continue
            try:
                await self.apply(shard_of(entry.stream), event)
            except Exception:
                log.exception("campaign result of event %s failed", entry.id)
                continue
            done.add(entry)
        return done

    async def apply(self, tenant: str, event: events.StateEvent) -> None:
        await agent_figures.apply(self.store, tenant, event)  # each agent's, per campaign
        if isinstance(event, events.DeliveryStatus):
            await self._delivery(tenant, event)
        elif isinstance(event, events.MessageAdded) and event.direction == "in":
            await self._reply(tenant, event.conversation)
        elif isinstance(event, events.Closed) and event.agent:
            await self._closed(tenant, event)

    async def _delivery(self, tenant: str, event: events.DeliveryStatus) -> None:
        parsed = parse_message_id(event.message)
        if parsed is None:
            return
        campaign_id, seq, attempt = parsed
        # Through the dispatcher (sent, failed, refused...): no longer pending. Not after a
        # temporary failure (it tries again), nor when held back: campaigns/begin_send.lua took
        # that one off itself, and by now it may be queued again under the same id.
        if event.status not in ("retry", "held"):
            await self.store.redis.srem(Keys(tenant).campaign_pending(campaign_id), event.message)
        if event.status not in DELIVERED and event.status not in FAILED and event.status != MACHINE:
            return
        campaign = await self._campaign(tenant, campaign_id)
        if campaign is None:
            return
        keys = Keys(tenant)
        next_channel, due_ms = "", 0
        machine = event.status == MACHINE
        retryable = campaign.voice.machine_retry if machine else event.status in FAILED and event.status != "unknown"
        if retryable and attempt < campaign.retry.attempts:
            blob = await self.store.redis.hget(keys.campaign_audience(campaign_id), seq)
            recipient = decode_recipient(blob) if blob else None
            next_channel = _next_channel(campaign, event.channel, event.status, recipient, event.permanent)
            due_ms = events.now_ms() + int(campaign.retry.spacing_minutes * 60_000)
        left_message = machine and not next_channel and bool(campaign.voice.machine_message)
        if event.status in DELIVERED or left_message:
            outcome = "delivered"
        elif event.status == "refused" and not event.provider_id:
            # The dispatcher's own refusal (channels.transport.Refused: the address opted
            # out or went on the do-not-contact list after it was queued) never reached a
            # provider, hence no provider id; a provider's "refused" (a fax machine took a
            # campaign call) carries its reference and stays a failure.
            outcome = "suppressed"
        else:
            outcome = "failed"
        await campaign_scripts.outcome(
            self.store,
            tenant,
            campaign_id,
            seq=seq,
            attempt=attempt,
            outcome=outcome,
            next_channel=next_channel,
            due_ms=due_ms,
            reason=f"{event.status}: {event.error}"[:300],
            variant=variant_prefix(campaign.variant_of(seq)),
        )

    async def _reply(self, tenant: str, conversation: str) -> None:
        parsed = parse_conversation_id(conversation)
        if parsed is None:
            return
        campaign_id, seq = parsed
        campaign = await self._campaign(tenant, campaign_id)
        if campaign is not None:
            await self._once(tenant, campaign, seq, "replied")

    async def _once(
        self, tenant: str, campaign: Campaign, seq: int, counter: str, by: int = 1, flag: str = "1"
    ) -> bool:
        """Count something once per recipient (a flag beside its status); True the first time."""
        first = await campaign_scripts.once(
            self.store,
            tenant,
            campaign.id,
            flag=f"{seq}:{counter}",
            counter=counter,
            variant=variant_prefix(campaign.variant_of(seq)),
            by=by,
            value=flag,
        )
        return bool(first)

    async def _closed(self, tenant: str, event: events.Closed) -> None:
        parsed = parse_conversation_id(event.conversation)
        if parsed is None:
            return
        campaign_id, seq = parsed
        campaign = await self._campaign(tenant, campaign_id)
        if campaign is None:
            return
        keys = Keys(tenant)
        disposition = event.disposition
        if disposition and await self._once(tenant, campaign, seq, f"disposition:{disposition}"):
            if disposition in CONVERTED[campaign.kind]:
                await self._once(tenant, campaign, seq, "converted")
        if disposition == PROMISE:  # the amount promised adds up per campaign and variant
            amount, due = await self.store.redis.hmget(
                keys.conversation(event.conversation), "promise_amount", "promise_date"
            )
            if amount:
                cents = int(decimal.Decimal(text(amount)) * 100)
                await self._once(tenant, campaign, seq, "promised_cents", cents, f"{text(amount)} {text(due or b'')}")
        if campaign.kind != "collections":
            return
        record = await self.store.redis.hmget(keys.conversation(event.conversation), "customer", "campaign_context")
        customer = text(record[0]) if record[0] else ""
        fields = json.loads(record[1]) if record[1] else {}
        subject = compliance.cap_subject(campaign.kind, "", "", fields, campaign.debt_field)
        async with self.store.redis.pipeline(transaction=False) as pipe:
            if subject != "addr:":  # a debt is named: Regulation F's quiet period starts now
                pipe.set(keys.debt_talked(subject), event.occurred_at, px=31 * compliance.DAY_MS)
            if disposition == "disputed":
                if customer:
                    pipe.sadd(keys.disputes, customer)
                if subject.startswith("debt:"):
                    pipe.sadd(keys.disputes, subject)
            await pipe.execute()


REPORTED = ("sent", "delivered", "failed", "suppressed", "replied", "converted", "promised_cents")
LABELS = {"promised_cents": "promised"}  # a column's name where it differs from the counter's


def shown(counter: str, value: int) -> str:
    """A counter as a report shows it: promised money in units with cents, the rest as counts."""
    return f"{value / 100:.2f}" if counter == "promised_cents" else str(value)


class VariantResult(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a campaign's results: the whole campaign (variant "") or one A/B variant."""

    variant: str
    share: int  # percent of the audience
    counts: dict[str, int]  # REPORTED counters, plus "retried"
    dispositions: dict[str, int]

    @property
    def contacted(self) -> int:
        """Recipients sent a message (a retry is the same recipient, counted once by
        registry.progress; a refusal at dispatch is none)."""
        return self.counts.get("sent", 0)

    @property
    def conversion_rate(self) -> float:
        """Converted (paid, promise to pay, converted) per recipient contacted."""
        return self.counts.get("converted", 0) / self.contacted if self.contacted else 0.0


class Report(msgspec.Struct, frozen=True, kw_only=True):
    campaign: str
    tenant: str
    kind: str
    state: str
    dispositions: list[str]  # the columns: the kind's, then any other recorded
    rows: list[VariantResult]  # the campaign as a whole first, then each variant


async def report(store: Store, tenant: str, campaign_id: str) -> Report:
    """A campaign's results as a whole and per A/B variant, from its counters."""
    campaign, _state = await registry.load(store, tenant, campaign_id)
    progress = await registry.progress(store, tenant, campaign_id)
    rows = [
        VariantResult(
            variant="",
            share=100,
            counts={k: progress.counts.get(k, 0) for k in (*REPORTED, "retried")},
            dispositions=dict(progress.dispositions),
        )
    ]
    for variant in campaign.variants:
        counters = progress.variants.get(variant.name, {})
        rows.append(
            VariantResult(
                variant=variant.name,
                share=variant.share,
                counts={k: counters.get(k, 0) for k in (*REPORTED, "retried")},
                dispositions={k.partition(":")[2]: v for k, v in counters.items() if k.startswith("disposition:")},
            )
        )
    known = list(DISPOSITIONS[campaign.kind])
    others = sorted({d for row in rows for d in row.dispositions} - set(known))
    return Report(
        campaign=campaign.id,
        tenant=tenant,
        kind=campaign.kind,
        state=progress.state,
        dispositions=known + others,
        rows=rows,
    )


def write_csv(result: Report, out: TextIO) -> None:
    """The report as CSV: one row for the campaign ("all"), then one per variant."""
    writer = csv.writer(out, lineterminator="\n")
    labels = [LABELS.get(k, k) for k in REPORTED]
    writer.writerow(["campaign", "variant", "share", *labels, "conversion_rate", *result.dispositions])
    for row in result.rows:
        writer.writerow(
            [
                result.campaign,
                row.variant or "all",
                row.share,
                *(shown(k, row.counts[k]) for k in REPORTED),
                f"{row.conversion_rate:.4f}",
                *(row.dispositions.get(d, 0) for d in result.dispositions),
            ]
        )


def _next_channel(campaign: Campaign, channel: str, status: str, recipient, permanent: bool = False) -> str:
    """The channel of the next attempt: the fallback once, else the same channel again
    (never after a refusal or a permanent failure, which repeat themselves)."""
    fallback = campaign.fallback_channel
    if fallback and channel != fallback and recipient is not None and address_for(fallback, recipient):
        return fallback
    if status == "refused" or permanent:
        return ""
    return channel


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    results = Results(store)
    consumer = bus.Consumer(
        store,
        CAMPAIGNS_GROUP,
        settings.consumer,
        [Keys(t.id).events for t in deployment.tenants],
        results.handle,
        batch=settings.batch,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries,
        defer_acks=True,
    )
    await consumer.run(stop)
