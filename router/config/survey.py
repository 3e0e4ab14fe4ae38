"""A tenant's satisfaction survey: which channels ask, when, how many, and what counts as low.

The wording is not here: it is a template per channel and locale
(templates/surveys/<tenant>/<locale>/<channel>.txt, else templates/surveys/<locale>/<channel>.txt),
rendered in the sandbox (router/surveys.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from router.config.fields import FieldError

# The channels a survey can ask on (fax is not among them). Voice asks on the keypad while
# the caller is still on the line after the agent hangs up (channels.voice.survey); it asks
# only where listed, so `channels` left out keeps the channels it meant before voice could.
SurveyChannel = Literal["webchat", "sms", "telegram", "email", "voice"]
SURVEY_CHANNELS: tuple[str, ...] = ("webchat", "sms", "telegram", "email")  # the default
Locale = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="a locale such as en or zh-CN")
]


class SurveyCap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """No more than `max` surveys on `channel` within `days` per address (the frequency cap
    campaigns keep, counted under the kind "survey")."""

    channel: SurveyChannel
    max: Annotated[int, msgspec.Meta(gt=0)]
    days: Annotated[float, msgspec.Meta(gt=0)]


class Survey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When an agent closes a conversation, the customer may be asked to rate it 1-5."""

    channels: list[SurveyChannel] = msgspec.field(default_factory=lambda: list(SURVEY_CHANNELS))
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = 0  # after the close
    share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0  # of the closed conversations asked
    # only closes with one of these dispositions are surveyed (empty: every one)
    dispositions: list[str] = []
    low_rating: Annotated[int, msgspec.Meta(ge=1, le=5)] = 2  # at or below: a follow-up for a supervisor
    answer_hours: Annotated[float, msgspec.Meta(gt=0, le=30 * 24)] = 72  # how long an answer counts
    locale: Locale = "en"  # the wording used when the customer's own locale has no template
    caps: list[SurveyCap] = []

    def __post_init__(self) -> None:
        if len(set(self.channels)) != len(self.channels):
            raise FieldError("channels", "a channel is listed twice")

    def asks_on(self, channel: str) -> bool:
        return channel in self.channels

    def caps_on(self, channel: str) -> list[SurveyCap]:
        return [cap for cap in self.caps if cap.channel == channel]
