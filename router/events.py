"""Every record that crosses a stream, and its MessagePack encoding.

Inbound contacts and outbound messages are built in Python and validated here
before they reach a stream. State events are appended by the Lua scripts in
router/lua (they are the atomic decisions), so their field names are part of the
contract with those scripts: a state event is a flat MessagePack map whose
"type" field selects the struct below.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from ulid import ULID

from router.errors import ContactRouterError

Channel = Literal["voice", "sms", "email", "fax", "webchat", "telegram"]
CHANNELS: tuple[str, ...] = ("voice", "sms", "email", "fax", "webchat", "telegram")
Direction = Literal["in", "out", "internal"]

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
TenantId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
# A message body: big enough for any email text part, small enough for a stream entry.
Body = Annotated[str, msgspec.Meta(max_length=1_000_000)]


class InvalidEvent(ContactRouterError, ValueError):
    """A payload that does not match its schema; raised before anything is written."""


def new_id() -> str:
    """A sortable, unique id (ULID) for contacts, messages, conversations."""
    return str(ULID())


def now_ms() -> int:
    return int(time.time() * 1000)


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    url: NonEmpty  # provider URL or "store:<sha256>" for the attachment store
    content_type: str = "application/octet-stream"
    filename: str = ""
    size: Annotated[int, msgspec.Meta(ge=0)] = 0


# metadata: the language the customer's browser is set to (the chat widget's), which routing
# takes when their words do not tell their language (router/intake.py)
BROWSER_LANGUAGE = "browser_language"
LANGUAGE_TAG = r"^([A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*)?$"  # BCP 47's shape: "yue", "zh-Hant-HK", "en-GB"


class InboundContact(msgspec.Struct, frozen=True, kw_only=True):
    """One message or call from a customer, as every adapter normalises it."""

    id: NonEmpty
    tenant: TenantId
    channel: Channel
    address: NonEmpty  # the customer's address on this channel (E.164, email, chat id)
    provider_id: NonEmpty  # the provider's id, used to drop retried webhooks
    name: str = ""  # what the customer calls themselves here (pre-chat form, email display name, Telegram)
    occurred_at: int
    direction: Literal["in"] = "in"
    to: str = ""  # the tenant's address that was contacted
    body: Body = ""
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()
    queue: str = ""  # chosen by the channel (IVR menu, pre-chat form); else the tenant's entry map
    priority: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    kind: Literal["message", "call", "callback", "voicemail"] = "message"
    original_at: int | None = None  # a callback keeps the age of the call it replaces
    thread: tuple[str, ...] = ()  # email Message-ID / In-Reply-To / References
    metadata: dict[str, str] = {}
    # the customer's language when the channel knows it (BCP 47, e.g. "yue", "zh-Hant"); routing
    # detects it from the first message when not given (router/language.py)
    language: Annotated[str, msgspec.Meta(max_length=35, pattern=LANGUAGE_TAG)] = ""


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to a customer: an agent's reply, an auto-reply, a campaign message."""

    id: NonEmpty
    tenant: TenantId
    channel: Channel
    to: NonEmpty
    occurred_at: int
    direction: Literal["out"] = "out"
    provider_id: str = ""  # filled in once the provider accepted it
    conversation: str = ""
    sender: str = ""  # the tenant's address it leaves from; empty means the channel default
    body: Body = ""
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()
    cc: tuple[str, ...] = ()  # email: others in the conversation an agent chose to copy
    agent: str = ""
    campaign: str = ""
    automatic: bool = False  # auto-replies must never answer auto-replies (RFC 3834)
    metadata: dict[str, str] = {}


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a conversation's history: a message either way, or an internal note."""

    id: str
    kind: Literal["in", "out", "note"]
    channel: str
    occurred_at: int
    body: str = ""
    subject: str = ""
    address: str = ""  # the customer's address it came from or went to
    name: str = ""  # the name a customer's message came with (InboundContact.name)
    agent: str = ""
    attachments: tuple[Attachment, ...] = ()
    contact_kind: str = "message"  # message | call | callback | voicemail
    metadata: dict[str, str] = {}


# --- State events. Appended by Lua scripts or Python; id is the stream entry id. ---


class _State(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of state events; subclasses add their own (keyword-only) fields."""

    tenant: str
    occurred_at: int
    id: str = ""
    channel: str = ""
    direction: str = "internal"
    provider_id: str = ""
    conversation: str = ""


class Queued(_State, kw_only=True, frozen=True, tag="queued"):
    queue: str
    priority: int = 0
    customer: str = ""


class MessageAdded(_State, kw_only=True, frozen=True, tag="message"):
    message: str  # the message id
    customer: str = ""
    agent: str = ""


class Reserved(_State, kw_only=True, frozen=True, tag="reserved"):
    reservation: str
    agent: str
    queue: str
    expires_at: int = 0


class Accepted(_State, kw_only=True, frozen=True, tag="accepted"):
    reservation: str
    agent: str
    queue: str = ""
    waited_ms: int = 0


class Rejected(_State, kw_only=True, frozen=True, tag="rejected"):
    reservation: str
    agent: str
    queue: str = ""


class TimedOut(_State, kw_only=True, frozen=True, tag="timed_out"):
    reservation: str
    agent: str
    queue: str = ""
    missed: int = 0


class Transferred(_State, kw_only=True, frozen=True, tag="transferred"):
    agent: str  # who handed it over
    to_agent: str = ""
    to_queue: str = ""
    note: str = ""


class WrappedUp(_State, kw_only=True, frozen=True, tag="wrapped_up"):
    agent: str


class Closed(_State, kw_only=True, frozen=True, tag="closed"):
    agent: str = ""
    disposition: str = ""


class Escalated(_State, kw_only=True, frozen=True, tag="escalated"):
    queue: str
    step: int
    action: str  # priority | widen | overflow
    to_queue: str = ""
    priority: int = 0


class SlaBreached(_State, kw_only=True, frozen=True, tag="sla_breached"):
    queue: str
    target_s: int
    waited_ms: int = 0


class PresenceChanged(_State, kw_only=True, frozen=True, tag="presence"):
    agent: str
    presence: str
    reason: str = ""


class DeliveryStatus(_State, kw_only=True, frozen=True, tag="delivery"):
    message: str
    status: str  # sending | sent | delivered | failed | refused | unknown
    error: str = ""
    attempt: int = 0
    # failed for good (channels.transport.PermanentFailure): the same message would fail the
    # same way again, so nobody sends it again (a campaign may still try its fallback channel)
    permanent: bool = False


class Abandoned(_State, kw_only=True, frozen=True, tag="abandoned"):
    queue: str
    waited_ms: int = 0


class OptedOut(_State, kw_only=True, frozen=True, tag="opted_out"):
    """A customer's address went on the channel's suppression list (SMS STOP)."""

    address: str
    keyword: str = ""  # the word they sent


class OptedIn(_State, kw_only=True, frozen=True, tag="opted_in"):
    """A customer's address came off the suppression list (SMS START)."""

    address: str
    keyword: str = ""


class SurveySent(_State, kw_only=True, frozen=True, tag="survey_sent"):
    """A closed conversation's customer was asked to rate it (router/surveys.py), or was not:
    `outcome` is sent, or why not (opted_out, do_not_contact, revocation_pending, capped,
    wrote_again)."""

    outcome: str
    queue: str = ""
    agent: str = ""
    message: str = ""  # the survey's outbound message, when sent


class SurveyResult(_State, kw_only=True, frozen=True, tag="survey_result"):
    """A customer's answer to a survey: a rating 1-5, and a comment given with it or after."""

    rating: int
    comment: str = ""
    queue: str = ""
    agent: str = ""
    low: bool = False  # at or below the tenant's low_rating: a follow-up is open for a supervisor
    sent_at: int = 0  # when the survey was sent (its figures count on that day)


StateEvent = (
    Queued
    | MessageAdded
    | Reserved
    | Accepted
    | Rejected
    | TimedOut
    | Transferred
    | WrappedUp
    | Closed
    | Escalated
    | SlaBreached
    | PresenceChanged
    | DeliveryStatus
    | Abandoned
    | OptedOut
    | OptedIn
    | SurveySent
    | SurveyResult
)

_encoder = msgspec.msgpack.Encoder()
_history_decoder = msgspec.msgpack.Decoder(HistoryEntry)
_state_decoder = msgspec.msgpack.Decoder(StateEvent)
_inbound_decoder = msgspec.msgpack.Decoder(InboundContact)
_outbound_decoder = msgspec.msgpack.Decoder(OutboundMessage)


def encode(event: msgspec.Struct) -> bytes:
    """Encode an event, validating it against its own schema first.

    msgspec checks constraints only when decoding, so a round trip is the check:
    a bad payload raises InvalidEvent here and never reaches a stream.
    """
    data = _encoder.encode(event)
    try:
        msgspec.msgpack.decode(data, type=type(event))
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{type(event).__name__}: {exc}") from None
    return data


def build(kind: type[msgspec.Struct], fields: dict) -> msgspec.Struct:
    """Build an event from untrusted fields (CLI, webhook), with a clear error."""
    try:
        return msgspec.convert(fields, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{kind.__name__}: {exc}") from None


def decode_inbound(data: bytes) -> InboundContact:
    return _inbound_decoder.decode(data)


def decode_outbound(data: bytes) -> OutboundMessage:
    return _outbound_decoder.decode(data)


def decode_state(data: bytes, entry_id: str = "") -> StateEvent:
    event = _state_decoder.decode(data)
    return msgspec.structs.replace(event, id=entry_id) if entry_id else event


def decode_history(data: bytes) -> HistoryEntry:
    return _history_decoder.decode(data)
