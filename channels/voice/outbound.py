"""Outbound calls: dialling a customer back, agent first.

When an agent accepts a callback, the router queues an OutboundMessage on the
voice channel (channels.voice.callbacks.dial_back; an agent's own call from the
inbox, callbacks.dial_customer, is one too); the dispatcher hands it to
VoiceSender, which asks the tenant's Twilio account to call the agent's phone, or
their softphone (client:<identity>) when they have none, with TwiML that says a
word and then dials the customer from the tenant's number (the one the customer
called, else its first). Each leg reports to channels.voice.callbacks, which
decides whether the customer was reached or the dispatcher's retry schedule dials
again.

At most once, as for SMS: a mark before each request, the CallSid written as
soon as Twilio answers, and a request that got no answer is recorded unknown,
never dialled again blindly. Tenants without Twilio get the sandbox outbox, or,
for an agent without a phone, a call on their simulated softphone
(channels.voice.simulated).
Campaign messages (OutboundMessage.campaign) are calls too, placed by
channels.voice.campaign.dial with answering-machine detection. Other voice
messages (a text reply on a call's conversation) still go to the sandbox outbox,
as before this sender existed.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import aiohttp
from twilio.base import values
from twilio.twiml.voice_response import Dial, VoiceResponse

from channels._twilio_rest import TwilioError, TwilioSender, no_answer, twilio_failure
from channels.transport import OutcomeUnknown, PermanentFailure, Reconciled, Refused
from channels.voice import bridge, recording, simulated, softphone
from channels.voice.campaign import dial as campaign_dial
from router import events
from router.config import Tenant
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.settings import Settings
from router.store import text

log = logging.getLogger(__name__)

CALLBACK = "callback"  # OutboundMessage.metadata["action"] of a callback
GREETING = "Connecting you to the customer."
AGENT_RING_S = 30  # how long the agent's phone rings
CUSTOMER_RING_S = 30  # how long the customer's phone rings, once the agent answered


def callback_status_url(settings: Settings, tenant: str, message: str, attempt: int, leg: str, dials: int = 0) -> str:
    """Where Twilio reports the progress of one leg of one dial (channels.voice.callbacks).

    The message, the dispatcher attempt that placed the call and the leg ride in the
    query (Twilio signs the whole URL), so a report is matched to its dial even when
    it overtakes our own record of the call, and a late report of an earlier dial
    is recognised as such. `dials`, when given, is how many dials the call may take
    (an agent's own call is dialled once), else the tenant's callback policy's.
    """
    base = settings.base_url
    fields: dict[str, object] = {"message": message, "attempt": attempt, "leg": leg}
    if dials:
        fields["dials"] = dials
    return f"{base}/twilio/{tenant}/voice/callback-status?{urlencode(fields)}"


def agent_first_twiml(
    customer: str,
    caller_id: str,
    status_callback: str,
    *,
    language: str = "en-US",
    greeting: str = GREETING,
    recording_callback: str = "",
) -> str:
    """What the agent hears when they answer: a word, then the customer's phone
    ringing; the customer sees the tenant's number. With a recording_callback the call
    is recorded from the customer's answer, dual-channel (channels.voice.recording)."""
    response = VoiceResponse()
    response.say(greeting, language=language)
    record = {}
    if recording_callback:
        record = {
            "record": recording.DIAL_RECORD,
            "recording_status_callback": recording_callback,
            "recording_status_callback_event": " ".join(recording.STATUS_EVENTS),
            "recording_status_callback_method": "POST",
        }
    dial = Dial(caller_id=caller_id, timeout=CUSTOMER_RING_S, **record)
    dial.number(
        customer,
        status_callback=status_callback,
        status_callback_event="answered completed",
        status_callback_method="POST",
    )
    response.append(dial)
    return str(response)


def is_callback(message: events.OutboundMessage) -> bool:
    """A call the router places agent first: a callback, the agent's own call to a
    customer (softphone.DIAL, dialled once), or the agent's leg of a caller's call
    (bridge.OFFER, screened, then bridged into the caller's conference)."""
    return message.metadata.get("action") in (CALLBACK, softphone.DIAL, bridge.OFFER)


def _dials(message: events.OutboundMessage) -> int:
    return 1 if message.metadata.get("action") == softphone.DIAL else 0


class VoiceSender(TwilioSender):
    channel = "voice"

    async def send(self, message: events.OutboundMessage) -> str:
        tenant = self.deployment.tenant(message.tenant)
        if message.campaign and tenant.twilio is not None:
            return await campaign_dial.place_call(self, tenant, message)
        if not is_callback(message) or (tenant.twilio is None and message.metadata.get("agent_phone")):
            return await self.sandbox.send(message)
        try:
            if tenant.twilio is None:  # the sandbox: the agent's simulated softphone rings
                return await self._ring_simulated(tenant, message)
            if message.metadata.get("action") == bridge.OFFER:
                return await self._offer(tenant, message)
            return await self._dial(tenant, message)
        except (PermanentFailure, OutcomeUnknown) as exc:
            if message.metadata.get("action") == bridge.OFFER:
                # the agent cannot be called: the caller's call goes on to the next agent
                agent, caller, reservation = (message.metadata.get(k, "") for k in ("agent", "call_sid", "reservation"))
                await bridge.missed(self.store, tenant, agent, message.conversation, caller, reservation, str(exc))
                raise
            # the dispatcher records the delivery; the conversation shows the outcome too
            outcome = "refused" if isinstance(exc, Refused) else "failed"
            if isinstance(exc, OutcomeUnknown):
                outcome = "unknown"
            await self._outcome(message, outcome, str(exc))
            raise

    async def _dial(self, tenant: Tenant, message: events.OutboundMessage) -> str:
        await self._still_wanted(message)
        agent = message.metadata.get("agent", "")
        # the agent's phone, else their softphone (a Twilio Client) when the account can sign its tokens
        agent_phone = message.metadata.get("agent_phone", "")
        if not agent_phone and softphone.mode(tenant) == "unavailable":
            raise PermanentFailure(
                f"agent {agent!r} has neither a phone nor the softphone (tenant {tenant.id}'s Twilio account "
                "has no API key)"
            )
        agent_phone = agent_phone or softphone.CLIENT + softphone.client_identity(agent)
        if not tenant.voice.numbers:
            raise PermanentFailure(f"tenant {tenant.id} has no voice number to call from")
        # the number the customer called us on, else the tenant's first
        caller_id = message.sender if message.sender in tenant.voice.numbers else tenant.voice.numbers[0]
        attempt = await self._mark_requested(message, conversation=message.conversation)
        twiml = agent_first_twiml(
            message.to,
            caller_id,
            callback_status_url(self.settings, tenant.id, message.id, attempt, "customer", _dials(message)),
            language=tenant.voice.language,
            recording_callback=await self._recording_callback(tenant, message),
        )
        try:
            call = await self.twilio.client(tenant).calls.create_async(
                to=agent_phone,
                from_=caller_id,
                twiml=twiml,
                timeout=AGENT_RING_S,
                status_callback=callback_status_url(
                    self.settings, tenant.id, message.id, attempt, "agent", _dials(message)
                ),
                status_callback_event=["completed"],
                status_callback_method="POST",
            )
        except TwilioError as exc:
            raise twilio_failure(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise no_answer(exc) from exc
        await self._record(message, call.sid, attempt)
        return call.sid

    async def _recording_callback(self, tenant: Tenant, message: events.OutboundMessage) -> str:
        """Where the recording of a placed call is reported, if its queue records them all."""
        queue = text(await self.store.redis.hget(Keys(tenant.id).conversation(message.conversation), "queue") or b"")
        if not recording.applies(tenant, queue, placed=True):
            return ""
        return recording.callback_url(self.settings.base_url, tenant.id, message.conversation)

    async def _offer(self, tenant: Tenant, message: events.OutboundMessage) -> str:
        """The agent's leg of a caller's call: their phone (with answering-machine
        detection, so a voicemail is a missed offer) or softphone, answered by the
        screen (bridge.screen), the status of the leg to bridge.agent_status."""
        await self._still_wanted(message)
        meta = message.metadata
        agent, agent_phone = meta.get("agent", ""), meta.get("agent_phone", "")
        if not agent_phone and softphone.mode(tenant) == "unavailable":
            raise PermanentFailure(
                f"agent {agent!r} has neither a phone nor the softphone (tenant {tenant.id}'s Twilio account "
                "has no API key)"
            )
        if not tenant.voice.numbers:
            raise PermanentFailure(f"tenant {tenant.id} has no voice number to call from")
        caller_id = message.sender if message.sender in tenant.voice.numbers else tenant.voice.numbers[0]
        query = bridge.offer_query(message.conversation, meta.get("call_sid", ""), agent, meta.get("reservation", ""))
        attempt = await self._mark_requested(message, conversation=message.conversation)
        try:
            call = await self.twilio.client(tenant).calls.create_async(
                to=agent_phone or softphone.CLIENT + softphone.client_identity(agent),
                from_=caller_id,
                url=bridge.screen_url(self.settings, tenant.id, query),
                method="POST",
                timeout=AGENT_RING_S,
                # synchronous detection: the screen is asked only once Twilio knows who answered
                machine_detection="Enable" if agent_phone else values.unset,
                status_callback=bridge.agent_status_url(self.settings, tenant.id, query),
                status_callback_event=["completed"],
                status_callback_method="POST",
            )
        except TwilioError as exc:
            raise twilio_failure(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise no_answer(exc) from exc
        await self._record(message, call.sid, attempt)
        await bridge.expect_report(
            self.store, tenant.id, message.conversation, meta.get("call_sid", ""), agent, meta.get("reservation", "")
        )
        return call.sid

    async def _ring_simulated(self, tenant: Tenant, message: events.OutboundMessage) -> str:
        """Without Twilio, the agent's leg rings their simulated softphone
        (channels.voice.simulated), marked and recorded as a real dial is."""
        await self._still_wanted(message)
        attempt = await self._mark_requested(message, conversation=message.conversation)
        sid = await simulated.place(self.store, tenant, message, attempt)
        await self._record(message, sid, attempt)
        return sid

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send: the marks say whether this attempt
        called Twilio (requested) and got a CallSid back (called). A CallSid of an
        earlier dial says nothing about this one."""
        tenant = self.deployment.tenant(message.tenant)
        simulated_ring = is_callback(message) and tenant.twilio is None and not message.metadata.get("agent_phone")
        if not (is_callback(message) or message.campaign) or (tenant.twilio is None and not simulated_ring):
            return await self.sandbox.reconcile(message)
        provider_id, attempts, requested, called = await self.store.redis.hmget(
            Keys(message.tenant).delivery(message.id), "provider_id", "attempts", "requested", "called"
        )
        attempts = int(attempts or 0)
        if called is not None and int(called) == attempts and provider_id:
            return "sent", provider_id.decode()
        if requested is None or int(requested) != attempts:
            return "not_sent", ""
        return "unknown", ""  # it died waiting for Twilio's answer

    async def _still_wanted(self, message: events.OutboundMessage) -> None:
        """A dial again after a busy line must not ring an agent who has since
        closed or handed on the conversation."""
        if not message.conversation:
            return
        state, agent = await self.store.redis.hmget(
            Keys(message.tenant).conversation(message.conversation), "state", "agent"
        )
        if state != b"assigned" or (agent or b"").decode() != message.metadata.get("agent", ""):
            raise Refused(f"conversation {message.conversation} is no longer with the agent who called back")

    async def _outcome(self, message: events.OutboundMessage, outcome: str, error: str) -> None:
        if message.conversation:
            await self.store.redis.hset(
                Keys(message.tenant).conversation(message.conversation),
                mapping={"callback_outcome": outcome, "callback_error": error},
            )

    async def _record(self, message: events.OutboundMessage, sid: str, attempt: int) -> None:
        keys = Keys(message.tenant)
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.delivery(message.id), mapping={"provider_id": sid, "called": attempt})
            pipe.set(keys.provider_message(sid), message.id, ex=PROVIDER_ID_TTL_S)
            await pipe.execute()
