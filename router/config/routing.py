"""How a tenant routes: its queues (targets, strategy, service level, hours,
escalation) and its agents (skills, capacity per channel)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec

from router.config.fields import FieldError, Name, Seconds
from router.events import CHANNELS
from router.hours import BusinessHours
from router.targets import TargetError, compile_target

Strategy = Literal["longest_idle", "least_occupied", "round_robin", "sticky", "proficiency"]


def _compiles(field: str, expression: str) -> None:
    try:
        compile_target(expression)
    except TargetError as exc:
        raise FieldError(field, str(exc)) from None


class ServiceLevel(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[int, msgspec.Meta(gt=0)] = 20  # answered (or first response) within
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)] = 80.0
    breach_queue: str = ""  # escalate a breached contact to this second-line queue
    # what the target counts: an agent taking the contact (voice, chat), or the
    # first reply reaching the customer (email, SMS: "first response within N hours")
    measure: Literal["answer", "first_response"] = "answer"


class EscalationStep(msgspec.Struct, forbid_unknown_fields=True):
    after: Seconds  # seconds of waiting, counted from the contact's original age
    priority: int = 0  # added to the contact's priority
    widen: str = ""  # an extra target expression; matching agents also qualify
    overflow: str = ""  # move the contact to this queue

    def __post_init__(self) -> None:
        if self.widen:
            _compiles("widen", self.widen)


class AfterHours(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["queue", "autoreply", "overflow"] = "queue"
    message: str = "We are closed right now; we will answer as soon as we open."
    queue: str = ""  # for overflow

    def __post_init__(self) -> None:
        if self.action == "overflow" and not self.queue:
            raise FieldError("queue", "overflow needs a queue")


class Queue(msgspec.Struct, forbid_unknown_fields=True):
    id: Name
    target: str = "true"
    name: str = ""
    priority: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    channels: list[str] = msgspec.field(default_factory=lambda: list(CHANNELS))
    strategy: Strategy = "longest_idle"
    skill: str = ""  # the skill whose level ranks agents for the proficiency strategy
    sticky_seconds: Seconds = 60
    reservation_timeout: Seconds | None = None
    wrapup_seconds: Seconds | None = None
    sla: ServiceLevel = msgspec.field(default_factory=ServiceLevel)
    hours: BusinessHours | None = None
    after_hours: AfterHours = msgspec.field(default_factory=AfterHours)
    escalation: list[EscalationStep] = []

    def __post_init__(self) -> None:
        for channel in self.channels:
            if channel not in CHANNELS:
                raise FieldError("channels", f"unknown channel {channel!r}")
        _compiles("target", self.target)

    def queue_references(self) -> Iterator[tuple[str, str]]:
        """(field, queue id) for each field naming another queue of the tenant."""
        for index, step in enumerate(self.escalation):
            if step.overflow:
                yield f"escalation[{index}].overflow", step.overflow
        if self.sla.breach_queue:
            yield "sla.breach_queue", self.sla.breach_queue
        if self.after_hours.queue:
            yield "after_hours.queue", self.after_hours.queue


DEFAULT_CAPACITY = {"voice": 1, "webchat": 3, "sms": 3, "telegram": 3, "email": 5, "fax": 5}


class Agent(msgspec.Struct, forbid_unknown_fields=True):
    id: Name
    name: str = ""
    skills: dict[str, int] = {}
    languages: list[str] = []
    level: int = 1
    attributes: dict[str, str | int | float | bool | list[str]] = {}
    capacity: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}  # per channel, plus "total"
    phone: str = ""

    def __post_init__(self) -> None:
        for channel in self.capacity:
            if channel != "total" and channel not in CHANNELS:
                raise FieldError("capacity", f"unknown channel {channel!r}")


def capacity_of(agent: Agent) -> dict[str, int]:
    """Per-channel capacity with defaults, and a total that defaults to the largest one."""
    capacity = dict(DEFAULT_CAPACITY)
    capacity.update({k: v for k, v in agent.capacity.items() if k != "total"})
    capacity["total"] = agent.capacity.get("total", max(capacity.values()))
    return capacity
