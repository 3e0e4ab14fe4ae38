"""Outbound SMS: through the tenant's Twilio account, or the sandbox outbox for a
tenant without one. Opted-out numbers are never sent to.

The provider's id (MessageSid) is recorded against our message id, so status
callbacks find the message (channels.sms.status), together with the segments and
encoding the body takes.
"""

from __future__ import annotations

import logging

import aiohttp
from twilio.base import values
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from channels._twilio_rest import TwilioError, TwilioSender, no_answer, twilio_failure
from channels.sms import optout
from channels.sms.segments import segments
from channels.transport import (
    OutcomeUnknown,
    PermanentFailure,
    Reconciled,
    Refused,
    TemporaryFailure,
    reconcile_from_record,
)
from router import bus, events
from router.config import Tenant
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)

# Twilio's "the recipient replied STOP to this sender": they never get our texts
# again, so the number joins the tenant's suppression list too.
UNSUBSCRIBED = 21610


def status_callback_url(settings: Settings, tenant: str) -> str:
    """Where Twilio reports a message's delivery status (channels.sms.status)."""
    base = settings.base_url
    return f"{base}/twilio/{tenant}/sms/status"


class SmsSender(TwilioSender):
    channel = "sms"

    async def send(self, message: events.OutboundMessage) -> str:
        if await optout.is_suppressed(self.store, message.tenant, message.to):
            raise Refused(f"{message.to} opted out of SMS")
        tenant = self.deployment.tenant(message.tenant)
        if tenant.twilio is None:
            provider_id = await self.sandbox.send(message)
            await self._record(message, provider_id, twilio=False)
            return provider_id
        sender = _sender(tenant, message)
        await self._mark_requested(message)
        try:
            created = await self.twilio.client(tenant).messages.create_async(
                to=message.to,
                body=message.body or values.unset,
                media_url=_media(message) or values.unset,
                status_callback=status_callback_url(self.settings, tenant.id),
                **sender,
            )
        except TwilioError as exc:
            raise await self._failure(message, exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise no_answer(exc) from exc
        await self._record(message, created.sid, twilio=True)
        return created.sid

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send. Twilio has no lookup by our id, but our
        own record is reliable (channels.transport.reconcile_from_record)."""
        tenant = self.deployment.tenant(message.tenant)
        if tenant.twilio is None:
            return await self.sandbox.reconcile(message)
        return await reconcile_from_record(self.store, message)

    async def _record(self, message: events.OutboundMessage, provider_id: str, *, twilio: bool) -> None:
        encoding, count = segments(message.body)
        keys = Keys(message.tenant)
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.delivery(message.id),
                mapping={
                    "provider_id": provider_id,
                    "segments": count,
                    "encoding": encoding,
                    "conversation": message.conversation,
                },
            )
            if twilio:
                pipe.set(keys.provider_message(provider_id), message.id, ex=PROVIDER_ID_TTL_S)
            await pipe.execute()

    async def _failure(
        self, message: events.OutboundMessage, exc: TwilioRestException | TwilioServiceException
    ) -> PermanentFailure | TemporaryFailure | OutcomeUnknown:
        """Twilio's refusal as the dispatcher's outcome: retry what may pass later."""
        failure = twilio_failure(exc)
        if isinstance(failure, PermanentFailure) and exc.code == UNSUBSCRIBED:
            await unsubscribed(self.store, message.tenant, message.to)
            return Refused(f"Twilio error {UNSUBSCRIBED}: {message.to} unsubscribed (replied STOP)")
        return failure


async def unsubscribed(store: Store, tenant: str, number: str, provider_id: str = "") -> None:
    """Twilio says the number opted out of this sender (a STOP we never saw, e.g.
    sent before the number was ours): it goes on the suppression list, with the
    OptedOut event first, as an inbound STOP does (channels.sms.inbound)."""
    if await optout.is_suppressed(store, tenant, number):
        return
    event = events.OptedOut(
        tenant=tenant,
        occurred_at=events.now_ms(),
        channel="sms",
        direction="in",
        provider_id=provider_id,
        address=number,
        keyword=f"twilio:{UNSUBSCRIBED}",
    )
    await bus.publish(store, Keys(tenant).events, event)
    await optout.suppress(store, tenant, number)
    log.info("%s unsubscribed from %s's SMS (Twilio %d): suppressed", number, tenant, UNSUBSCRIBED)


def _sender(tenant: Tenant, message: events.OutboundMessage) -> dict[str, str]:
    """Who the message leaves from: the tenant's Messaging Service, else the number
    the conversation used when it is one of the tenant's, else its first number."""
    if tenant.sms.messaging_service_sid:
        return {"messaging_service_sid": tenant.sms.messaging_service_sid}
    if message.sender and message.sender in tenant.sms.numbers:
        return {"from_": message.sender}
    if tenant.sms.numbers:
        return {"from_": tenant.sms.numbers[0]}
    raise PermanentFailure(f"tenant {tenant.id} has neither an SMS number nor a Messaging Service to send from")


def _media(message: events.OutboundMessage) -> list[str]:
    """Attachments Twilio can fetch itself (MMS); stored ones have no public URL yet."""
    return [a.url for a in message.attachments if a.url.startswith(("https://", "http://"))]
