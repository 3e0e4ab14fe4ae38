"""Voice through Twilio Voice: the incoming call and its IVR menu (calls), the wait
loop with position, expected wait and the callback offer (waiting), voicemail
(voicemail), call status callbacks (status); dialling customers back when an
agent takes a callback (callbacks); campaign calls with "press 1 for an agent"
(campaign)."""

from __future__ import annotations

import importlib

from aiohttp import web

from channels.voice import calls, campaign, status, voicemail, waiting

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    """Mount the voice webhooks."""
    calls.setup(app)
    waiting.setup(app)
    voicemail.setup(app)
    status.setup(app)
    campaign.setup(app)
    try:
        callbacks = importlib.import_module("channels.voice.callbacks")
    except ModuleNotFoundError as exc:
        if exc.name != "channels.voice.callbacks":
            raise
        return
    if hasattr(callbacks, "setup"):
        callbacks.setup(app)
