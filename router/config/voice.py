"""A tenant's voice section (Twilio Voice): numbers, the IVR menu, waiting, callbacks, voicemail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec

from router.config.fields import E164, MenuKey, Region


class MenuOption(msgspec.Struct, forbid_unknown_fields=True):
    """One choice of the IVR menu: a key, words a caller may say instead, and the queue."""

    digit: MenuKey
    label: str  # what the menu says: "For billing, press 1"
    queue: str
    speech: list[str] = []  # e.g. ["billing", "invoice"]


class CallbackPolicy(msgspec.Struct, forbid_unknown_fields=True):
    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3  # dial attempts on busy / no answer
    spacing_s: Annotated[float, msgspec.Meta(ge=0)] = 300  # between attempts
    # ISO regions (e.g. "US", "CA") a callback may be dialled in; empty: the region of
    # the tenant's first voice number. Premium, shared-cost, VoIP, personal and
    # unknown numbers are refused whatever the region (toll fraud).
    regions: list[Region] = []


RecordingMode = Literal["off", "inbound", "all"]  # all: callbacks and the agents' own calls too
CONSENT = "This call may be recorded for quality and training."


class VoiceChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Calls for a tenant. A number belongs to one tenant (`Deployment` checks that across tenants)."""

    numbers: list[E164] = []  # numbers callers dial
    language: str = "en-US"
    greeting: str = "Thank you for calling."
    menu: list[MenuOption] = []  # empty: straight to the tenant's voice entry queue
    offer_callback: bool = True
    voicemail: bool = True  # after hours, and on request from the queue
    hold_music_url: str = ""  # played between announcements; empty: a pause
    expected_handle_seconds: Annotated[float, msgspec.Meta(gt=0)] = 240  # for the expected-wait estimate
    callback: CallbackPolicy = msgspec.field(default_factory=CallbackPolicy)
    # Agent calls recorded (dual-channel, at Twilio): off, calls customers make (inbound), or
    # those and the calls the router places for agents (all); per queue where it differs.
    recording: RecordingMode = "off"
    recording_queues: dict[str, RecordingMode] = {}
    recording_consent: str = CONSENT  # said before a recorded call is put through, in `language`
    # days a recording is kept, then deleted at Twilio and here; None: the tenant's retention_days
    # (0: for ever)
    recording_retention_days: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # outside numbers an agent may transfer a call to (E.164); none: colleagues and queues only
    transfer_numbers: list[E164] = []
    # What a person hears when a campaign dialled ahead of its agents and none is free
    # (who called, how to call back); empty: one made of the tenant's name and first number.
    abandon_message: Annotated[str, msgspec.Meta(max_length=1000)] = ""

    def queue_references(self) -> Iterator[tuple[str, str]]:
        """(field, queue id) for each menu choice and each queue's recording mode."""
        for index, option in enumerate(self.menu):
            yield f"menu[{index}].queue", option.queue
        for queue in self.recording_queues:
            yield f"recording_queues.{queue}", queue

    def recording_mode(self, queue: str) -> RecordingMode:
        return self.recording_queues.get(queue, self.recording)
