"""Placing a campaign's call: the recipient's phone rings from the tenant's number with
answering-machine detection; once Twilio knows who answered it asks
channels.voice.campaign.answer what to play, and it reports the call's end to
channels.voice.campaign.outcome. Both URLs name the message (Twilio signs them whole).

At most once, as a callback's dial (channels.voice.outbound): the attempt is marked
before the request and the CallSid recorded with it, so the dispatcher's reconcile tells
a call never requested from one whose answer was lost, and a redelivered message finds
its delivery settled and places nothing.

Every rule of the campaign (an opt-out on any of the person's channels, pressing 9 or
a STOP among them, or a do-not-contact entry since the call was queued, a revocation
awaiting an agent, a dispute, a pause, the window, the 7-in-7 cap and the quiet period) was judged
again a moment before, in the dispatcher's lease (workers/campaigns/gate.py), which
gives back the attempt of a call it refuses.

The collections cap (7 calls in 7 days per debt) counts the attempt when the campaigns
worker queues the message, once per message id (router/lua/campaigns/send.lua). A call
Twilio certainly never placed (it refused the request) gives that attempt back here, so
the cap counts exactly the calls placed; a call whose fate is unknown stays counted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import aiohttp

from channels._twilio_rest import TwilioError, no_answer, twilio_failure
from channels.transport import PermanentFailure
from router import events
from router.campaigns import compliance, registry
from router.campaigns.model import Campaign, CampaignError, decode_recipient
from router.config import Tenant
from router.keys import Keys
from router.settings import Settings
from router.store import Store

if TYPE_CHECKING:
    from channels.voice.outbound import VoiceSender

log = logging.getLogger(__name__)

ANSWER_PATH = "/twilio/{tenant}/voice/campaign"
CHOICE_PATH = "/twilio/{tenant}/voice/campaign/choice"
STATUS_PATH = "/twilio/{tenant}/voice/campaign/status"
RING_S = 30  # longer mostly reaches voicemail, which AMD then has to sort out


def campaign_url(settings: Settings, tenant: str, path: str, message: str) -> str:
    """An absolute URL of a campaign call's webhook, naming the message it plays (one
    message is one call, so the message names the call too)."""
    base = settings.base_url
    return f"{base}{path.format(tenant=tenant)}?{urlencode({'message': message})}"


def machine_detection(campaign: Campaign) -> str:
    """Twilio's MachineDetection: DetectMessageEnd waits for the beep so a message left on
    a machine is recorded whole; Enable decides sooner, enough for hanging up."""
    return "DetectMessageEnd" if campaign.voice.machine_message else "Enable"


async def place_call(sender: VoiceSender, tenant: Tenant, message: events.OutboundMessage) -> str:
    """Call the recipient for a campaign message; returns the CallSid. Raises the
    dispatcher's outcomes (channels.transport) as the callback dial does."""
    store = sender.store
    if not tenant.voice.numbers:
        raise PermanentFailure(f"tenant {tenant.id} has no voice number to call from")
    try:
        campaign, _state = await registry.load(store, tenant.id, message.campaign)
    except CampaignError as exc:
        raise PermanentFailure(str(exc)) from None
    caller_id = message.sender if message.sender in tenant.voice.numbers else tenant.voice.numbers[0]
    settings = sender.settings
    attempt = await sender._mark_requested(message, conversation=message.conversation)
    try:
        call = await sender.twilio.client(tenant).calls.create_async(
            to=message.to,
            from_=caller_id,
            url=campaign_url(settings, tenant.id, ANSWER_PATH, message.id),
            method="POST",
            machine_detection=machine_detection(campaign),
            timeout=RING_S,
            status_callback=campaign_url(settings, tenant.id, STATUS_PATH, message.id),
            status_callback_event=["completed"],
            status_callback_method="POST",
        )
    except TwilioError as exc:
        failure = twilio_failure(exc)
        if isinstance(failure, PermanentFailure):
            await give_back_attempt(store, campaign, message)  # Twilio refused: no call was placed
        raise failure from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise no_answer(exc) from exc
    await sender._record(message, call.sid, attempt)
    log.info("campaign %s of %s: calling %s (%s)", campaign.id, tenant.id, message.to, call.sid)
    return call.sid


async def give_back_attempt(store: Store, campaign: Campaign, message: events.OutboundMessage) -> None:
    """Take a call that was never placed off the attempts every campaign records at queue
    time (what frequency caps count)."""
    keys = Keys(campaign.tenant)
    blob = await store.redis.hget(keys.campaign_audience(campaign.id), message.metadata.get("campaign_recipient", ""))
    fields = decode_recipient(blob).fields if blob else {}
    subject = compliance.cap_subject(campaign.kind, "voice", message.to, fields, campaign.debt_field)
    await store.redis.zrem(
        keys.contact_attempts("voice", compliance.attempts_subject(campaign.kind, subject)), message.id
    )
