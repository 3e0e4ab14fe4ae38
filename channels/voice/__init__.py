"""Voice through Twilio Voice: the incoming call and its IVR menu (inbound), the wait
loop with position, expected wait and the callback offer (waiting), voicemail
(voicemail), call status callbacks (status); dialling customers back when an agent
takes a callback (callbacks, placed by outbound's VoiceSender); campaign calls with
"press 1 for an agent" (campaign); the caller bridged to the agent who took the call
in a conference per conversation, the agent's leg screened (bridge), and the keypad
survey the caller hears when the agent hangs up (survey); the figures a
waiting caller hears (estimate); the agents' softphone in the browser (softphone),
and its simulated calls for tenants without Twilio (simulated).

Importing the package registers what an accepted offer of a callback does (dial it)
and of a call (call the agent's leg and screen it; in the sandbox, ring the simulated
softphone): the core's agents.accept
runs the hooks without knowing the voice channel."""

from __future__ import annotations

from aiohttp import web

from channels.voice import bridge, callbacks, campaign, inbound, recording, status, survey, voicemail, waiting
from channels.voice._webhook import twilio_context
from channels.voice.outbound import CALLBACK, VoiceSender
from router import agents, timers

__all__ = ["VoiceSender", "setup"]

agents.ON_ACCEPT[CALLBACK] = callbacks.dial_back
agents.ON_ACCEPT["call"] = callbacks.offer_call  # the agent's leg, screened (or the sandbox's softphone rings)
timers.EXTRA[bridge.OFFER_TIMER] = bridge.report_overdue  # an agent leg Twilio never reported on


def setup(app: web.Application) -> None:
    """Mount the voice webhooks."""
    app.cleanup_ctx.append(twilio_context)
    inbound.setup(app)
    bridge.setup(app)
    waiting.setup(app)
    voicemail.setup(app)
    recording.setup(app)
    survey.setup(app)
    status.setup(app)
    campaign.setup(app)
    callbacks.setup(app)
