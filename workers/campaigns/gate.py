"""Every rule of a campaign, judged again at the moment its message leaves.

The campaigns worker checks the rules when it queues a message, but the message may
then wait in the outbound stream (a slow or stopped dispatcher, a provider's backoff)
while the campaign is paused or cancelled, the recipient opts out, goes on the
do-not-contact list, disputes the debt or talks to an agent, or the window closes. So
the dispatcher takes a campaign message's send lease with campaigns/begin_send.lua,
which judges the whole rule set in the same step as the lease, and records a refusal
there too (the message held for later, or refused for good, with its reason).

The window is the only rule judged here in Python (the window engine,
router.campaigns.compliance): the span around this moment that is inside the window in
every one of the recipient's zones (and within the campaign's start and end), which the
script compares with Redis's clock, and when the window opens next. A delay between this
judgement and the lease can only push the moment out of the span, never widen it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from router import events, scripts
from router.campaigns import compliance
from router.campaigns.model import Campaign, Recipient, decode_campaign, decode_recipient, other_identity
from router.config import Deployment
from router.customers import identity
from router.errors import UnknownTenant
from router.keys import Keys
from router.store import Store
from workers.campaigns import scripts as campaign_scripts
from workers.campaigns.ids import parse_message_id, variant_prefix

ZONES = "zones"  # a campaign message's metadata: the recipient's time zones the worker judged it in


def zones_metadata(zones: tuple[str, ...]) -> str:
    return ",".join(zones)


def is_campaign_message(message: events.OutboundMessage) -> bool:
    """A message the campaigns worker queued: it names its campaign, and its id is that
    campaign's message id (ids.message_id). Only the worker makes campaign messages; an
    agent's reply in a campaign conversation is no campaign message, and goes as replies do."""
    parsed = parse_message_id(message.id) if message.campaign else None
    return parsed is not None and parsed[0] == message.campaign


class SendGate:
    """Makes the dispatcher's lease call for a campaign message (see the module's text)."""

    def __init__(
        self, store: Store, deployment: Deployment | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.store = store
        self.deployment = deployment
        # seconds, as time.time (looked up at each call: tests move it, and with it the embedded store's TIME)
        self.clock = clock or (lambda: time.time())
        # A launched campaign's definition never changes (registry.create replaces drafts only).
        self._campaigns: dict[tuple[str, str], Campaign] = {}

    async def lease_call(self, message: events.OutboundMessage, payload: bytes, lease_ms: int) -> scripts.Call:
        keys = Keys(message.tenant)
        parsed = parse_message_id(message.id)
        if parsed is None or parsed[0] != message.campaign:
            raise ValueError(f"{message.id} is not a message of campaign {message.campaign}")
        seq, attempt = parsed[1], parsed[2]
        campaign, recipient = await self._load(message.tenant, message.campaign, seq)
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        check = campaign_scripts.SendCheck(
            message_id=message.id,
            payload=payload,
            lease_ms=lease_ms,
            campaign_key=keys.campaign(message.campaign),
            status=keys.campaign_status(message.campaign),
            due=keys.campaign_due(message.campaign),
            stats=keys.campaign_stats(message.campaign),
            pending=keys.campaign_pending(message.campaign),
            seq=seq,
            attempt=attempt,
            channel=message.channel,
            address=message.to,
            conv=message.conversation,
            ident=identity(message.channel, message.to),
            scope=self._scope(message.tenant),
            other_ident="",
            disputes="",
            debt="",
            cap="",
            talked="",
            open_from=0,
            open_until=0,
            reopens=0,
            variant="",
        )
        if campaign is None:  # no such campaign any more: the script finds no state, and refuses it
            return campaign_scripts.begin_send_call(self.store, message.tenant, check, [])
        fields = recipient.fields if recipient else {}
        subject = compliance.cap_subject(campaign.kind, message.channel, message.to, fields, campaign.debt_field)
        open_from, open_until, reopens = self._window(campaign, self._zones(message, recipient), now)
        check = check._replace(
            disputes=keys.disputes if campaign.kind == "collections" else "",
            debt=subject if campaign.kind == "collections" and subject.startswith("debt:") else "",
            cap=keys.contact_attempts(message.channel, compliance.attempts_subject(campaign.kind, subject)),
            talked=keys.debt_talked(subject),
            open_from=open_from,
            open_until=open_until,
            reopens=reopens,
            variant=variant_prefix(campaign.variant_of(seq)),
            other_ident=other_identity(message.channel, recipient) if recipient else "",
        )
        day = compliance.DAY_MS
        caps = [
            campaign_scripts.CapArgs(cap.max, int(cap.days * day), int(cap.quiet_days * day))
            for cap in campaign.effective_caps()
            if cap.channel == message.channel
        ]
        return campaign_scripts.begin_send_call(self.store, message.tenant, check, caps)

    async def _load(self, tenant: str, campaign_id: str, seq: int) -> tuple[Campaign | None, Recipient | None]:
        keys = Keys(tenant)
        campaign = self._campaigns.get((tenant, campaign_id))
        async with self.store.redis.pipeline(transaction=False) as pipe:
            if campaign is None:
                pipe.hget(keys.campaign(campaign_id), "definition")
            pipe.hget(keys.campaign_audience(campaign_id), seq)
            replies = await pipe.execute()
        if campaign is None:
            if replies[0] is None:
                return None, None
            campaign = self._campaigns[(tenant, campaign_id)] = decode_campaign(replies[0])
        blob = replies[-1]
        return campaign, decode_recipient(blob) if blob else None

    def _zones(self, message: events.OutboundMessage, recipient: Recipient | None) -> tuple[str, ...]:
        """The zones the worker judged the message in (messages carry them), else worked out
        again as the worker does (a message queued by an earlier version)."""
        given = message.metadata.get(ZONES, "")
        if given:
            return tuple(given.split(","))
        fallback = self._tenant_zone(message.tenant)
        if recipient is None:
            return compliance.zones_for(message.to if message.channel != "email" else "", "", fallback)
        return compliance.zones_for(recipient.phone, recipient.timezone, fallback, recipient.zones)

    def _scope(self, tenant: str) -> str:
        """The tenant's opt_out_scope; without a deployment, the safe side ("person")."""
        if self.deployment is not None:
            try:
                return self.deployment.tenant(tenant).opt_out_scope
            except UnknownTenant:
                pass
        return "person"

    def _tenant_zone(self, tenant: str) -> str:
        if self.deployment is not None:
            try:
                return self.deployment.tenant(tenant).timezone
            except UnknownTenant:
                pass
        return "UTC"

    @staticmethod
    def _window(campaign: Campaign, zones: tuple[str, ...], now: dt.datetime) -> tuple[int, int, int]:
        """(from, until) around now inside the window and the campaign's start and end
        ((0, 0) when now is not), and when the window opens next (ms)."""
        window = campaign.effective_window()
        span = compliance.open_span(now, zones, window)
        if span is not None and campaign.start and span[0] < campaign.start:
            span = (campaign.start, span[1]) if now >= campaign.start else None
        if span is not None and campaign.end and span[1] > campaign.end:
            span = (span[0], campaign.end) if now < campaign.end else None
        after = span[1] if span else now
        if campaign.start and after < campaign.start:
            after = campaign.start
        try:
            reopens = compliance.next_allowed(after, zones, window)
        except compliance.NoWindow:  # the worker skips such a recipient once it has it back
            reopens = now
        if span is None:
            return 0, 0, _ms(reopens)
        return _ms(span[0]), _ms(span[1]), _ms(reopens)


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)
