"""The `campaigns` role: claim due recipients, check, render, publish.

Each round, for every running campaign of every tenant: take tokens (pacing),
claim a batch of due recipients with a lease (claim script), decide each one
(send window in local time, frequency caps), render its message, and publish it
with the send script, which checks suppression and the campaign's state at that
instant and records everything in one step. The outbound message id is derived
from campaign, recipient and attempt, and the send script refuses a second send
of an attempt: a worker killed anywhere leaves its recipients to be claimed again
when their lease ends, and nothing goes twice. The dispatch process delivers, after
judging every rule again as the message is to leave (workers/campaigns/gate.py); a
message it holds back comes back here (held:...) and is queued again under its id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from router import events, scripts
from router.campaigns import compliance, dial_state, isolated, registry
from router.campaigns.model import (
    MACHINE_MESSAGE,
    Campaign,
    Cap,
    Recipient,
    Window,
    decode_campaign,
    decode_recipient,
    other_identity,
)
from router.campaigns.render import TemplateProblem
from router.config import Deployment
from router.customers import identity
from router.keys import Keys
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage, text
from workers.campaigns import dialer, pacing, results, unsubscribe
from workers.campaigns import scripts as campaign_scripts
from workers.campaigns.audience import address_for
from workers.campaigns.gate import ZONES, zones_metadata
from workers.campaigns.ids import conversation_id, message_id, variant_prefix

log = logging.getLogger(__name__)

BATCH = 200
LEASE_MS = 60_000  # a claimed recipient is another worker's again after this
IDLE_S = 0.2
SEND_CHUNK = 50  # recipients per send (and settle) script call


@dataclass(slots=True)
class _Loaded:
    raw: bytes
    campaign: Campaign


@dataclass(slots=True)
class _Pending:
    recipient: Recipient
    attempt: int
    channel: str
    address: str
    zones: tuple[str, ...]  # the recipient's time zones, for a send a cap pushes out of the window
    subject: str = ""  # cap subject
    cap_key: str = ""  # where the attempt is recorded (always, so every campaign's caps see it)
    capped: bool = False  # a cap of this campaign applies: checked before sending
    cap_seen: int = -1  # attempts seen by that check (-1: not checked)


class CampaignWorker:
    def __init__(
        self,
        store: Store,
        deployment: Deployment,
        *,
        batch: int = BATCH,
        lease_ms: int = LEASE_MS,
        public_url: str = "",
        clock: Callable[[], dt.datetime] | None = None,
        renderer: isolated.IsolatedRenderer | None = None,
    ) -> None:
        self.store = store
        # templates are run in a bounded child process, never on this loop
        self.renderer = renderer or isolated.shared()
        self.deployment = deployment
        self.batch = batch
        self.lease_ms = lease_ms
        self.public_url = public_url or "http://127.0.0.1:8080"
        self._campaigns: dict[tuple[str, str], _Loaded] = {}
        self._resting: dict[tuple[str, str], float] = {}  # campaigns out of tokens: until when (s, by the clock)
        self._keys: dict[str, bytes] = {}
        # tests move time (time.time also moves the embedded store's); Redis's clock runs leases
        self.clock = clock or (lambda: dt.datetime.fromtimestamp(time.time(), dt.UTC))

    async def step(self) -> int:
        """One round over every running campaign; returns how many recipients were handled."""
        handled = 0
        for tenant in self.deployment.tenants:
            for campaign_id in await registry.running(self.store, tenant.id):
                try:
                    handled += await self.run_batch(tenant.id, campaign_id)
                except STORE_ERRORS:
                    raise  # the store is away: run() waits it out, not one traceback per campaign
                except Exception:
                    log.exception("campaign %s of %s failed a batch; retrying", campaign_id, tenant.id)
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        outage = StoreOutage("campaigns worker")
        while not stop.is_set():
            try:
                handled = await self.step()
            except STORE_ERRORS as exc:
                # Claimed recipients go back when their lease ends; nothing is lost by waiting.
                await stopped(stop, outage.failed(exc))
                continue
            outage.recovered()
            if not handled:
                await stopped(stop, IDLE_S)

    async def _load(self, tenant: str, campaign_id: str) -> tuple[_Loaded | None, str]:
        raw, state = await self.store.redis.hmget(Keys(tenant).campaign(campaign_id), "definition", "state")
        if raw is None:
            return None, ""
        loaded = self._campaigns.get((tenant, campaign_id))
        if loaded is None or loaded.raw != raw:
            campaign = decode_campaign(raw)
            loaded = _Loaded(raw, campaign)
            self._campaigns[(tenant, campaign_id)] = loaded
        return loaded, text(state)

    async def run_batch(self, tenant: str, campaign_id: str) -> int:
        loaded, state = await self._load(tenant, campaign_id)
        if loaded is None or state != "running":
            return 0
        campaign = loaded.campaign
        now = self.clock()
        if campaign.start and now < campaign.start:
            return 0
        if campaign.end and now >= campaign.end:
            await registry.finish(self.store, tenant, campaign_id)
            return 0
        if now.timestamp() < self._resting.get((tenant, campaign_id), 0.0):
            return 0  # no token for it yet: asking again would only spin
        # The campaign's bucket and the tenant's for the campaign's channel, in one take: a
        # batch is no bigger than the slower of the two lets out. (A retry on the fallback
        # channel pays that channel's bucket when it is sent, and this one's all the same.)
        buckets = [pacing.campaign_bucket(tenant, campaign_id, campaign.pacing.per_minute, campaign.pacing.burst)]
        limits = await pacing.channel_limits(self.store, tenant)
        if campaign.channel in limits:
            buckets.append(pacing.channel_bucket(tenant, campaign.channel, limits[campaign.channel]))
        want = self.batch
        if dialer.paced_by_agents(campaign):  # as many calls as the agents on the line can take
            want = min(want, (await dialer.calls_now(self.store, self.deployment.tenant(tenant), campaign, now)).calls)
            if not want:
                return 0
        tokens, wait = await pacing.take(self.store, tenant, want, buckets)
        if not tokens:
            self._resting[(tenant, campaign_id)] = now.timestamp() + wait / 1000
            return 0
        seqs, blobs, statuses, next_due = await campaign_scripts.claim(
            self.store, tenant, campaign_id, count=tokens, lease_ms=self.lease_ms
        )
        if not seqs:
            await pacing.give_back(self.store, tenant, tokens, buckets)
            if next_due < 0 and await campaign_scripts.complete(self.store, tenant, campaign_id):
                log.info("campaign %s of %s finished: every recipient settled", campaign_id, tenant)
            return 0
        sent = await self._handle(tenant, loaded, now, list(zip(seqs, blobs, statuses, strict=True)))
        await pacing.give_back(self.store, tenant, tokens - sent, buckets)
        return len(seqs)

    async def _handle(self, tenant: str, loaded: _Loaded, now: dt.datetime, claimed: list) -> int:
        campaign = loaded.campaign
        keys = Keys(tenant)
        fallback_zone = self.deployment.tenant(tenant).timezone
        window = campaign.effective_window()
        caps = campaign.effective_caps()
        later: list[tuple[int, int, str]] = []  # (seq, due ms, counter)
        final: list[tuple[int, str, str]] = []  # (seq, status, counter)
        pending: list[_Pending] = []
        now_ms = int(now.timestamp() * 1000)
        for seq_raw, blob, status in claimed:
            seq = int(seq_raw)
            if not blob:
                final.append((seq, "skipped:missing", "skipped"))
                continue
            recipient = decode_recipient(blob)
            attempt, channel = _attempt_of(text(status), campaign)
            address = address_for(channel, recipient)
            if not address and attempt == 1 and campaign.fallback_channel:
                channel = campaign.fallback_channel
                address = address_for(channel, recipient)
            if not address:
                final.append((seq, f"skipped:no {channel} address", "skipped"))
                continue
            zones = compliance.zones_for(recipient.phone, recipient.timezone, fallback_zone, recipient.zones)
            try:
                opens = compliance.next_allowed(now, zones, window)
            except compliance.NoWindow:
                final.append((seq, "skipped:no_window", "skipped"))
                continue
            if opens > now:
                later.append((seq, int(opens.timestamp() * 1000), "rescheduled"))
                continue
            item = _Pending(recipient, attempt, channel, address, zones)
            # whose attempts a cap counts; for collections also the debt a dispute may name
            item.subject = compliance.cap_subject(
                campaign.kind, channel, address, recipient.fields, campaign.debt_field
            )
            # Recorded whether or not this campaign caps the channel: a cap counts the
            # texts of every campaign of the kind, not only of the campaigns that have it.
            item.cap_key = keys.contact_attempts(channel, compliance.attempts_subject(campaign.kind, item.subject))
            item.capped = any(c.channel == channel for c in caps)
            pending.append(item)
        pending = await self._check_caps(keys, caps, window, now_ms, pending, later)
        sent = await self._send(tenant, loaded, now_ms, pending, later, final)
        await self._settle(keys, campaign.id, later, final)
        return sent

    async def _check_caps(
        self,
        keys: Keys,
        caps: list[Cap],
        window: Window,
        now_ms: int,
        pending: list[_Pending],
        later: list,
    ) -> list[_Pending]:
        capped = [p for p in pending if p.capped]
        if not capped:
            return pending
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for item in capped:
                pipe.zrange(item.cap_key, 0, -1, withscores=True)
                pipe.get(keys.debt_talked(item.subject))
            replies = await pipe.execute()
        ready = [p for p in pending if not p.capped]
        for index, item in enumerate(capped):
            attempts = [int(score) for _member, score in replies[2 * index]]
            talked = int(replies[2 * index + 1] or 0)
            at = compliance.caps_allow_at(caps, item.channel, attempts, talked, now_ms)
            if at > now_ms:
                when = dt.datetime.fromtimestamp(at / 1000, dt.UTC)
                try:
                    at = int(compliance.next_allowed(when, item.zones, window).timestamp() * 1000)
                except compliance.NoWindow:
                    pass
                later.append((item.recipient.seq, at, "rescheduled"))
                continue
            item.cap_seen = len(attempts)
            ready.append(item)
        return ready

    async def _send(
        self, tenant: str, loaded: _Loaded, now_ms: int, pending: list[_Pending], later: list, final: list
    ) -> int:
        if not pending:
            return 0
        campaign = loaded.campaign
        keys = Keys(tenant)
        pending = await self._channel_pacing(tenant, now_ms, pending, later, paid=campaign.channel)
        if not pending:
            return 0
        # Who the recipients already are (the send script creates the missing ones).
        owners = await self.store.redis.hmget(keys.identities, [identity(p.channel, p.address) for p in pending])
        ready: list[tuple[_Pending, campaign_scripts.RecipientArgs]] = []
        for item, owner in zip(pending, owners, strict=True):
            try:
                fields = await self._recipient_args(
                    tenant, loaded, keys, now_ms, item, text(owner) if owner else events.new_id()
                )
            except (TemplateProblem, unsubscribe.NoUnsubscribe) as exc:  # the same on every attempt: skipped
                log.warning("campaign %s recipient %s: %s", campaign.id, item.recipient.seq, exc)
                final.append((item.recipient.seq, f"skipped:{exc}"[:500], "skipped"))
                continue
            ready.append((item, fields))
        cap_days = max([c.days for c in campaign.effective_caps()] + [compliance.HISTORY_DAYS])
        batch = campaign_scripts.SendBatch(
            status=keys.campaign_status(campaign.id),
            due=keys.campaign_due(campaign.id),
            stats=keys.campaign_stats(campaign.id),
            outbound=keys.outbound,
            events=keys.events,
            queue=campaign.queue,
            campaign=campaign.id,
            reply_until=now_ms + int(campaign.reply_days * compliance.DAY_MS),
            cap_ttl=int(cap_days * compliance.DAY_MS),
            disputes=keys.disputes if campaign.kind == "collections" else "",
            priority=self.deployment.tenant(tenant).queue(campaign.queue).priority,
            campaign_key=keys.campaign(campaign.id),
            scope=self.deployment.tenant(tenant).opt_out_scope,
            pending=keys.campaign_pending(campaign.id),
        )
        # A few dozen recipients per script call: one round trip for the batch, while no
        # call holds Redis long enough to delay routing.
        chunks = [ready[i : i + SEND_CHUNK] for i in range(0, len(ready), SEND_CHUNK)]
        calls = [
            campaign_scripts.send_call(self.store, tenant, batch, [fields for _item, fields in chunk])
            for chunk in chunks
        ]
        sent, queued = 0, []
        for chunk, result in zip(chunks, await scripts.run_pipelined(self.store.redis, calls), strict=True):
            if isinstance(result, Exception):
                log.error("campaign %s: sending %d recipients failed: %s", campaign.id, len(chunk), result)
                continue  # their lease runs out and they are claimed again
            for (item, _fields), outcome in zip(chunk, result, strict=True):
                outcome = text(outcome)
                if outcome == "sent":
                    sent += 1
                    if item.channel == "voice":  # a fallback text is no call in flight
                        queued.append(message_id(campaign.id, item.recipient.seq, item.attempt))
                elif outcome in ("recheck", "stopped"):  # decided afresh, or after a resume
                    later.append((item.recipient.seq, item.recipient.seq, ""))  # due at once, in file order
        if dialer.paced_by_agents(campaign):
            await dial_state.ringing(self.store, tenant, campaign.id, queued, now_ms)
        return sent

    async def _channel_pacing(
        self, tenant: str, now_ms: int, pending: list[_Pending], later: list, *, paid: str
    ) -> list:
        """The tenant's pace of the channels other than `paid` (the campaign's, whose tokens
        the batch took): those that get no token now wait for one."""
        if all(item.channel == paid for item in pending):
            return pending
        limits = await pacing.channel_limits(self.store, tenant)
        if not limits:
            return pending
        ready: list[_Pending] = []
        by_channel: dict[str, list[_Pending]] = {}
        for item in pending:
            by_channel.setdefault(item.channel, []).append(item)
        for channel, items in by_channel.items():
            if channel == paid or channel not in limits:
                ready += items
                continue
            bucket = pacing.channel_bucket(tenant, channel, limits[channel])
            granted, wait = await pacing.take(self.store, tenant, len(items), [bucket])
            ready += items[:granted]
            later += [(item.recipient.seq, now_ms + max(wait, 1000), "") for item in items[granted:]]
        return ready

    async def _recipient_args(
        self, tenant: str, loaded: _Loaded, keys: Keys, now_ms: int, item: _Pending, customer: str
    ) -> campaign_scripts.RecipientArgs:
        """The send script's arguments for one recipient, its message rendered."""
        campaign = loaded.campaign
        recipient = item.recipient
        extra: dict[str, str] = {}
        metadata = {"campaign_recipient": str(recipient.seq), "attempt": str(item.attempt), "kind": campaign.kind}
        # Rendered now, not when the machine answers: a template that cannot be said skips
        # the recipient with its reason instead of placing a call that can only hang up.
        machine = await self.renderer.render_machine(campaign, recipient) if item.channel == "voice" else ""
        variant = campaign.variant_of(recipient.seq)
        if variant:
            metadata["variant"] = variant
        if item.channel == "email":
            # Every campaign email carries a way to unsubscribe that works: one that could not
            # is skipped with the reason here, never queued to fail (or count as sent) later.
            token = unsubscribe.make_token(await self._signing_key(tenant), tenant, "email", item.address, campaign.id)
            metadata.update(unsubscribe.headers(self.deployment.tenant(tenant), self.public_url, token))
            extra["unsubscribe_url"] = unsubscribe.url(self.public_url, tenant, token)  # the page, in the body
        rendered = await self.renderer.render(campaign, item.channel, recipient, extra)
        mid = message_id(campaign.id, recipient.seq, item.attempt)
        conversation = conversation_id(campaign.id, recipient.seq)
        agent = f"campaign:{campaign.id}"
        message = events.OutboundMessage(
            id=mid,
            tenant=tenant,
            channel=item.channel,
            to=item.address,
            occurred_at=now_ms,
            conversation=conversation,
            body=rendered.body,
            subject=rendered.subject,
            campaign=campaign.id,
            automatic=True,
            # the zones it was judged in, for the dispatcher to judge it in again (workers/campaigns/gate.py)
            metadata={**metadata, **({MACHINE_MESSAGE: machine} if machine else {}), ZONES: zones_metadata(item.zones)},
        )
        entry = events.HistoryEntry(
            id=mid,
            kind="out",
            channel=item.channel,
            occurred_at=now_ms,
            body=rendered.body,
            subject=rendered.subject,
            address=item.address,
            agent=agent,
            metadata=metadata,
        )
        added = events.MessageAdded(
            tenant=tenant,
            occurred_at=now_ms,
            channel=item.channel,
            direction="out",
            conversation=conversation,
            message=mid,
            customer=customer,
            agent=agent,
        )
        debt = item.subject if campaign.kind == "collections" and item.subject.startswith("debt:") else ""
        fields = campaign_scripts.RecipientArgs(
            seq=recipient.seq,
            attempt=item.attempt,
            channel=item.channel,
            address=item.address,
            ident=identity(item.channel, item.address),
            new_customer=customer,
            conv=conversation,
            message=events.encode(message),
            entry=msgspec.msgpack.encode(entry),
            message_event=events.encode(added),
            context=json.dumps(recipient.fields, separators=(",", ":"), ensure_ascii=False),
            cap=item.cap_key,
            cap_seen=item.cap_seen,
            message_id=mid,
            debt=debt,
            variant=variant_prefix(variant),
            other_ident=other_identity(item.channel, recipient),
        )
        return fields

    async def _signing_key(self, tenant: str) -> bytes:
        if tenant not in self._keys:
            self._keys[tenant] = await unsubscribe.signing_key(self.store, tenant)
        return self._keys[tenant]

    async def _settle(self, keys: Keys, campaign_id: str, later: list, final: list) -> None:
        if not later and not final:
            return
        entries = [campaign_scripts.Settlement(seq, "later", due, counter) for seq, due, counter in later]
        entries += [campaign_scripts.Settlement(seq, "final", status, counter) for seq, status, counter in final]
        chunks = [entries[i : i + SEND_CHUNK] for i in range(0, len(entries), SEND_CHUNK)]
        calls = [campaign_scripts.settle_call(self.store, keys.shard, campaign_id, chunk) for chunk in chunks]
        for chunk, result in zip(chunks, await scripts.run_pipelined(self.store.redis, calls), strict=True):
            if isinstance(result, Exception):  # their lease runs out and they are claimed again
                log.error("campaign %s: settling %d recipients failed: %s", campaign_id, len(chunk), result)


def _attempt_of(status: str, campaign: Campaign) -> tuple[int, str]:
    """The attempt and channel a claimed recipient is due for: its first, a retry, or one
    the dispatcher held back when it was to leave (held:<attempt>:<channel>:<reason>)."""
    if status.startswith(("retry:", "held:")):
        _, attempt, channel = status.split(":", 3)[:3]
        return int(attempt), channel
    return 1, campaign.channel


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    public = settings.base_url
    if not unsubscribe.one_click_allowed(public):
        log.warning(
            "PUBLIC_URL %s is not https: campaign email carries a mailto: List-Unsubscribe only, without "
            "one-click (RFC 8058), which large mailbox providers ask of bulk senders",
            public,
        )
    worker = CampaignWorker(store, deployment, batch=max(settings.batch, 1) * 2, public_url=public)
    log.info("campaigns worker %s watching %d tenants", settings.consumer, len(deployment.tenants))
    await asyncio.gather(worker.run(stop), results.run(store, deployment, settings, stop))
