"""What a campaign call plays, once Twilio's answering-machine detection knows who answered.

POST /twilio/{tenant}/voice/campaign?message=<id> (signed; Twilio asks it when the
callee picks up, with AnsweredBy):
- a person (human, or unknown) hears the rendered message in the tenant's voice
  language, then "to speak to an agent, press 1; to stop these calls, press 9" (a
  Gather, asked once more on silence); the message counts delivered;
- an answering machine gets the campaign's `voice.machine_message`, rendered for the
  recipient and left after the beep, or a hang-up; the message is "machine", which the
  campaign's retry policy reads (workers.campaigns.results);
- a fax machine: a hang-up.
POST /twilio/{tenant}/voice/campaign/choice?message=<id>&attempt=<n> takes the key:
1 makes the callee an inbound voice contact in the campaign's queue, which joins the
recipient's campaign conversation with its context (router/lua/intake.lua), and sends
them on to the wait loop (channels.voice.waiting) like any caller; 9 puts the number on
the tenant's voice suppression list, which every voice campaign checks before it, and (under
the tenant's opt_out_scope "person") every campaign to the person on any channel.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_auth import tenant_form
from channels.voice import inbound
from channels.voice._webhook import twiml, url
from channels.voice.campaign import agents, outcome
from channels.voice.campaign.dial import ANSWER_PATH, CHOICE_PATH
from router import bus, events
from router.appkeys import STORE
from router.campaigns import isolated, registry
from router.campaigns.model import (
    MACHINE_MESSAGE,
    Campaign,
    CampaignError,
    decode_recipient,
)
from router.campaigns.render import TemplateProblem
from router.config import Tenant
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

OFFER_ATTEMPTS = 2  # the options are asked once more on silence or another key
OFFER_TIMEOUT_S = 6
AGENT_DIGIT, STOP_DIGIT = "1", "9"
TO_AGENT = "To speak to an agent, press 1."
TO_STOP = "To stop these calls, press 9."
STOPPED = "You will not receive these calls any more. Goodbye."
GOODBYE = "Thank you. Goodbye."
CLOSED = "Sorry, our agents are not available now. Goodbye."


def setup(app: web.Application) -> None:
    app.router.add_post(ANSWER_PATH, answer)
    app.router.add_post(CHOICE_PATH, choice)


async def _call_of(request: web.Request, tenant: Tenant) -> tuple[events.OutboundMessage, Campaign] | None:
    """The campaign message the signed URL names, and its campaign; None when either is gone."""
    store = request.app[STORE]
    message_id = request.query.get("message", "")
    if not message_id:
        raise web.HTTPBadRequest(text="the message is required")
    payload = await store.redis.hget(Keys(tenant.id).delivery(message_id), "payload")
    message = events.decode_outbound(payload) if payload else None
    if message is None or message.tenant != tenant.id or not message.campaign:
        log.warning("campaign call webhook for unknown message %s of %s", message_id, tenant.id)
        return None
    try:
        campaign, _state = await registry.load(store, tenant.id, message.campaign)
    except CampaignError:
        log.warning("campaign call %s of %s: campaign %s is gone", message_id, tenant.id, message.campaign)
        return None
    return message, campaign


async def answer(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("CallSid", "From", "To"))
    response = VoiceResponse()
    found = await _call_of(request, tenant)
    if found is None:
        response.hangup()
        return twiml(response)
    message, campaign = found
    sid, answered_by = form["CallSid"], form.get("AnsweredBy", "")
    state, error = outcome.answered(answered_by)
    if agents.with_agents(campaign):
        return await _answer_with_agents(request, response, tenant, form, campaign, message, state, error)
    if state == "machine":
        said = await machine_message(store, campaign, message)
        if said:
            response.say(said, language=tenant.voice.language)
        error += ": message left" if said else ": hung up"
    # Stored before Twilio hears the answer: a failure here is a hang-up, never a
    # message played and not counted.
    await outcome.mark(store, tenant.id, message.id, sid, state, error, answered_by or "none")
    if state == "delivered":
        _offer(request, response, tenant, campaign, message, attempt=1, body=message.body)
    else:
        response.hangup()
    return twiml(response)


async def _answer_with_agents(
    request: web.Request,
    response: VoiceResponse,
    tenant: Tenant,
    form: MultiDictProxy[str],
    campaign: Campaign,
    message: events.OutboundMessage,
    state: str,
    error: str,
) -> web.Response:
    """AMD has decided, and no agent has been involved yet (channels.voice.campaign.agents):
    a person goes to a free agent or hears the abandon message; a machine gets the
    campaign's machine message, if it allows one, or a hang-up."""
    store = request.app[STORE]
    sid, answered_by = form["CallSid"], form.get("AnsweredBy", "")
    fate = ""
    if state == "delivered":
        fate = await agents.person_answered(store, tenant, campaign, message)
        if fate == "abandoned":
            error = "abandoned: no agent was free"
            response.say(agents.abandon_message(tenant), language=tenant.voice.language)
    else:
        if state == "machine":
            said = await machine_message(store, campaign, message)
            if said:
                response.say(said, language=tenant.voice.language)
            error += ": message left" if said else ": hung up"
        await agents.machine_answered(store, tenant.id, campaign.id, message.id)
    await outcome.mark(store, tenant.id, message.id, sid, state, error, answered_by or "none")
    if fate == "connected":
        body = f"Answered a call of campaign {campaign.name or campaign.id}"
        await _enter_queue(request, response, tenant, form, campaign, message, body=body)
    else:
        response.hangup()
    log.info("campaign call %s of %s (%s): %s %s", sid, tenant.id, campaign.id, state, fate or error)
    return twiml(response)


async def choice(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("CallSid", "From", "To"))
    response = VoiceResponse()
    found = await _call_of(request, tenant)
    if found is None:
        response.hangup()
        return twiml(response)
    message, campaign = found
    digits, language = form.get("Digits", ""), tenant.voice.language
    attempt = inbound.query_int(request.query.get("attempt"), 1)
    if digits == AGENT_DIGIT:
        if _queue_open(tenant, campaign.queue):
            await _enter_queue(request, response, tenant, form, campaign, message)
        else:
            response.say(CLOSED, language=language)
            response.hangup()
    elif digits == STOP_DIGIT:
        await opt_out(store, tenant.id, message, form["CallSid"])
        response.say(STOPPED, language=language)
        response.hangup()
    elif attempt < OFFER_ATTEMPTS:
        _offer(request, response, tenant, campaign, message, attempt=attempt + 1)
    else:
        response.say(GOODBYE, language=language)
        response.hangup()
    return twiml(response)


def _queue_open(tenant: Tenant, queue_id: str) -> bool:
    hours = tenant.queue(queue_id).hours
    return hours is None or hours.is_open(dt.datetime.now(dt.UTC))


def _offer(
    request: web.Request,
    response: VoiceResponse,
    tenant: Tenant,
    campaign: Campaign,
    message: events.OutboundMessage,
    *,
    attempt: int,
    body: str = "",
) -> None:
    """The message (first time) and the keys, as one Gather so a key cuts it short;
    silence comes to `choice` too, which asks again or says goodbye."""
    language = tenant.voice.language
    path = CHOICE_PATH.format(tenant=tenant.id) + "?" + urlencode({"message": message.id, "attempt": attempt})
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=OFFER_TIMEOUT_S,
        action=url(request, path),
        action_on_empty_result=True,
    )
    if body:
        gather.say(body, language=language)
    # "press 1" only while someone can take the call
    options = f"{TO_AGENT} {TO_STOP}" if _queue_open(tenant, campaign.queue) else TO_STOP
    gather.say(options, language=language)


async def _enter_queue(
    request: web.Request,
    response: VoiceResponse,
    tenant: Tenant,
    form: MultiDictProxy[str],
    campaign: Campaign,
    message: events.OutboundMessage,
    *,
    body: str = "",
) -> None:
    """The callee becomes a caller waiting in the campaign's queue: a call record as an
    incoming call has (its `from` the customer), an InboundContact once per CallSid,
    then the wait loop. The contact joins the recipient's campaign conversation, so the
    agent sees the campaign's context; its metadata names the campaign and message too."""
    store = request.app[STORE]
    sid = form["CallSid"]
    call = await inbound.get_call(store, tenant.id, sid)
    if not call.get("contact"):  # a repeated press or a retried webhook queues nothing more
        contact = events.build(
            events.InboundContact,
            {
                "id": events.new_id(),
                "tenant": tenant.id,
                "channel": "voice",
                "kind": "call",
                "address": message.to,
                "to": form["From"],  # the tenant's number we called from
                "provider_id": sid,
                "occurred_at": events.now_ms(),
                "queue": campaign.queue,
                "body": body or f"Asked for an agent during the call of campaign {campaign.name or campaign.id}",
                "metadata": {
                    "call_sid": sid,
                    "campaign": campaign.id,
                    "campaign_message": message.id,
                    "campaign_conversation": message.conversation,
                },
            },
        )
        key = Keys(tenant.id).call(sid)
        # The contact id is kept before the contact is added: a retry names the same one.
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "started_at", str(contact.occurred_at))
            pipe.hset(
                key,
                mapping={
                    "tenant": tenant.id,
                    "from": message.to,
                    "to": form["From"],
                    "direction": "out",
                    "contact": contact.id,
                    "queue": campaign.queue,
                    "state": "queued",
                    "campaign": campaign.id,
                    "message": message.id,
                },
            )
            pipe.expire(key, inbound.CALL_TTL_S)
            await pipe.execute()
        await bus.ingest(store, contact)
        log.info("campaign call %s of %s: %s asked for an agent (%s)", sid, tenant.id, message.to, campaign.queue)
    response.redirect(url(request, f"{inbound.WAIT_PATH}?n=0"))


async def opt_out(store: Store, tenant: str, message: events.OutboundMessage, sid: str) -> bool:
    """Put the callee's number on the tenant's voice suppression list (what the campaigns'
    send script checks for voice); True the first time. The event goes first, as for SMS
    STOP: a failure in between repeats it on Twilio's retry rather than losing it."""
    keys = Keys(tenant)
    if await store.redis.sismember(keys.suppression("voice"), message.to):
        return False
    event = events.OptedOut(
        tenant=tenant,
        occurred_at=events.now_ms(),
        channel="voice",
        direction="in",
        provider_id=sid,
        conversation=message.conversation,
        address=message.to,
        keyword=STOP_DIGIT,
    )
    await bus.publish(store, keys.events, event)
    log.info("%s of %s pressed 9 on a campaign call: no more calls", message.to, tenant)
    return bool(await store.redis.sadd(keys.suppression("voice"), message.to))


async def machine_message(store: Store, campaign: Campaign, message: events.OutboundMessage) -> str:
    """The recipient's answering-machine message, rendered by the campaigns worker when it
    queued the call (so it is known to render and to fit a <Say>); "" for none. A call
    queued before messages carried it renders it here, with the same limits, and gets a
    hang-up when it cannot be rendered (logged), never a message with a blank in it."""
    if MACHINE_MESSAGE in message.metadata:
        return message.metadata[MACHINE_MESSAGE]
    if not campaign.voice.machine_message:
        return ""
    seq = message.metadata.get("campaign_recipient", "")
    blob = await store.redis.hget(Keys(campaign.tenant).campaign_audience(campaign.id), seq)
    if not blob:
        return ""
    try:
        # in the bounded child process: the web process's loop never runs a template
        return await isolated.shared().render_machine(campaign, decode_recipient(blob))
    except TemplateProblem as exc:
        log.warning("campaign %s recipient %s: machine message not rendered: %s", campaign.id, seq, exc)
        return ""
