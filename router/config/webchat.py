"""A tenant's web chat section: the widget it embeds, what it asks first, its limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec

from router.config.fields import EnvName, FieldError, HexColor, WebOrigin
from router.hours import BusinessHours
from router.i18n import N_

# The widget's words a tenant may change; while a tenant keeps these, each visitor reads them
# in the browser's language (channels/webchat/widget.py), and a tenant's own words are kept as written.
DEFAULT_GREETING = N_("Hi! How can we help you today?")
DEFAULT_OFFLINE_MESSAGE = N_("We are offline right now. Leave your email and a message, and we will write back.")

PrechatField = Literal["name", "email", "topic"]
UploadType = Literal["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]


class ChatTopic(msgspec.Struct, forbid_unknown_fields=True):
    """A topic the visitor picks before chatting, and the queue it routes to."""

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    queue: str


class WebchatLimits(msgspec.Struct, forbid_unknown_fields=True):
    message_bytes: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 4000  # UTF-8 bytes of one message
    per_visitor_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 20  # messages and uploads
    per_ip_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 60  # messages, uploads and new visitors
    upload_types: list[UploadType] = msgspec.field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]
    )
    upload_max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 5 * 1024 * 1024


class WebchatChannel(msgspec.Struct, forbid_unknown_fields=True):
    """The chat widget a tenant embeds on its site. The identity secret (the tenant's
    server signs identified customers with it) is never in the file: the file names
    the environment variable that holds it."""

    allowed_origins: list[WebOrigin] = []  # pages that may open the chat, e.g. "https://www.acme.example"
    title: str = ""  # the panel's title; default: the tenant's name
    greeting: str = DEFAULT_GREETING  # left as is, it is said in the visitor's language
    color: HexColor | None = None  # default: the tenant's brand_color
    text_color: HexColor = "#ffffff"
    offline_message: str = DEFAULT_OFFLINE_MESSAGE  # likewise
    hours: BusinessHours | None = None  # default: the hours of the tenant's webchat entry queue
    prechat: list[PrechatField] = []  # asked before the first message
    prechat_required: list[PrechatField] = []
    topics: list[ChatTopic] = []  # the "topic" field's choices, each routing to its queue
    identity_secret_env: EnvName | None = None
    identity_secret: str = ""  # filled from identity_secret_env by load_deployment: the newest key
    identity_secrets: tuple[str, ...] = ()  # every key listed there, newest first (router.keyring)
    demo_page: bool = False  # serve /webchat/{tenant}/demo, a page showing the widget
    limits: WebchatLimits = msgspec.field(default_factory=WebchatLimits)

    def __post_init__(self) -> None:
        for field in self.prechat_required:
            if field not in self.prechat:
                raise FieldError("prechat_required", f"{field!r} is required but not asked (add it to prechat)")
        if "topic" in self.prechat and not self.topics:
            raise FieldError("topics", "the topic field needs at least one topic")

    def queue_references(self) -> Iterator[tuple[str, str]]:
        """(field, queue id) for each topic."""
        for index, topic in enumerate(self.topics):
            yield f"topics[{index}].queue", topic.queue
