"""Voice campaigns: a campaign message on the voice channel is a phone call.

dial.py     VoiceSender places the call (the tenant's Twilio account) with
            answering-machine detection, at most once per message
answer.py   what the call plays once Twilio knows who answered: the message and
            "press 1 for an agent, 9 to stop these calls", or the machine message
outcome.py  how the call ended, as the message's delivery state (campaign results
            count it, and the retry policy reads it)
"""

from __future__ import annotations

from aiohttp import web

from channels.voice.campaign import answer, outcome

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    """Mount the campaign call's webhooks (called by channels.voice.setup)."""
    answer.setup(app)
    outcome.setup(app)
