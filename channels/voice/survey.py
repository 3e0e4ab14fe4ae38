"""The keypad survey after a call: when the agent hangs up, the caller, still on the line,
is asked to rate the call 1-5 on the keypad, where the tenant's `[tenants.survey]` lists
voice.

The agent's participant ends the conversation's conference when it leaves
(channels.voice.bridge); the caller's <Dial> then comes to its action (waiting.dialed)
with the caller's call still in progress. While the call is still "connected" there (not
moved out by a transfer), `offer` asks router.surveys.ask_on_call, which judges it as any
survey (the sampled share, the opt-outs, the caps, once per conversation) and records it
as sent. Then the caller hears the question in a <Gather numDigits=1>:

- a key 1-5 comes to `answer` (signed, on the caller's own call): recorded through
  survey_answer.lua as every channel's rating is (the day's figures, a low rating's
  follow-up, a survey_result event), then thanks and goodbye;
- another key, or a second post of the same Gather, records nothing and hangs up;
- no key: the Gather falls through to <Hangup>; nothing is recorded.

A caller who hangs up first (the Dial's action then says the call is over) is not asked,
nor one handed over to an outside number by a warm transfer (channels.voice.transfer).
The call's state is "survey" meanwhile, so its talk time (channels.voice.status) ends when
the agent hung up and the desk no longer offers to hold or transfer it.

In the sandbox the caller's side of a simulated call is not played, so nobody is asked.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from channels.voice import inbound
from channels.voice._webhook import call_form, twiml, url
from router import events, surveys
from router.appkeys import STORE
from router.config import Tenant

log = logging.getLogger(__name__)

PATH = "/twilio/voice/survey"  # the Gather's action: the key the caller pressed
STATE = "survey"  # the caller's call while the survey is asked (Keys.call "state")
TIMEOUT_S = 8  # how long the caller has to press a key after the question
RATINGS = frozenset("12345")


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, answer)


async def offer(request: web.Request, tenant: Tenant, caller: str, call: dict[str, str]) -> VoiceResponse | None:
    """The agent left the caller's conference: the survey's TwiML if the caller is to be
    asked (recorded as sent), else None (the call ends as before)."""
    store = request.app[STORE]
    if call.get("transferred_to"):  # handed over to an outside number: not the tenant's call to rate
        return None
    conversation = await inbound.conversation_of(store, tenant.id, caller, call)
    if conversation is None or tenant.survey is None or not tenant.survey.asks_on("voice"):
        return None
    outcome, question, thanks = await surveys.ask_on_call(store, tenant, conversation, locale=tenant.voice.language)
    if outcome != "sent":
        return None
    now = str(events.now_ms())
    await inbound.update_call(store, tenant.id, caller, state=STATE, survey_at=now, survey_thanks=thanks)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=TIMEOUT_S,
        action=url(request, PATH + "?" + urlencode({"conversation": conversation})),
        method="POST",
    )
    gather.say(question, language=tenant.voice.language)
    response.hangup()  # no key: nothing recorded
    return response


async def answer(request: web.Request) -> web.Response:
    """The caller's key: 1-5 is their rating (the first one counts), thanks and goodbye;
    anything else, or a key on a call that was not asked, records nothing."""
    store = request.app[STORE]
    tenant, form = await call_form(request)
    conversation = request.query.get("conversation", "")
    if not conversation:
        raise web.HTTPBadRequest(text="conversation is required")
    response = VoiceResponse()
    caller = form["CallSid"]
    call = await inbound.get_call(store, tenant.id, caller)
    digits = form.get("Digits", "")
    asked = call.get("state") == STATE and await inbound.conversation_of(store, tenant.id, caller, call) == conversation
    if asked and digits in RATINGS and tenant.survey is not None:
        outcome, _given = await surveys.rate(store, tenant, conversation, int(digits), channel="voice")
        if outcome == "rated":
            response.say(call.get("survey_thanks") or surveys.THANKS, language=tenant.voice.language)
        log.info("keypad rating of %s/%s: %s", tenant.id, conversation, outcome)
    elif not asked:
        log.warning("keypad rating for %s/%s on call %s, which was not asked: ignored", tenant.id, conversation, caller)
    response.hangup()
    return twiml(response)
