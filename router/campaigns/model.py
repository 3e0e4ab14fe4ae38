"""A campaign's definition (from a TOML or JSON file) and its recipients.

Everything here is checked when the campaign is created, against the tenant it
belongs to, so a worker never meets an unknown queue, channel or template.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import msgspec

from router.config import Deployment, Tenant
from router.customers import identity
from router.errors import ContactRouterError, UnknownTenant
from router.events import Channel, TenantId
from router.templating import sandboxed

Kind = Literal["collections", "cross_sell", "notice"]
# The channels an audience file gives addresses for (a phone number or an email).
CAMPAIGN_CHANNELS = ("sms", "voice", "email")
# A voice message's metadata key for what an answering machine hears (the worker writes
# it, the voice channel's answer webhook plays it).
MACHINE_MESSAGE = "machine_message"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CampaignId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
Positive = Annotated[int, msgspec.Meta(gt=0)]

# Regulation F (12 CFR 1006.6(b)(1)(i)) and the TCPA: collections reach a debtor only
# between 08:00 and 21:00 at the debtor's location. The engine enforces it whatever
# window the campaign asks for.
COLLECTIONS_HOURS = ("08:00", "21:00")
# Regulation F 12 CFR 1006.14(b)(2): at most 7 calls within 7 consecutive days per debt,
# and none within 7 days after a telephone conversation about that debt.
COLLECTIONS_CALL_CAP = (7, 7.0, 7.0)  # attempts, days, quiet days after a conversation
CONVERTED = {
    "collections": frozenset({"paid", "promise_to_pay"}),
    "cross_sell": frozenset({"converted"}),
    "notice": frozenset({"converted"}),
}
DISPOSITIONS = {
    "collections": ("promise_to_pay", "paid", "disputed", "wrong_number", "not_interested"),
    "cross_sell": ("converted", "not_interested", "wrong_number"),
    "notice": ("converted", "not_interested", "wrong_number"),
}


class CampaignError(ContactRouterError, ValueError):
    """A campaign definition or command that cannot be used; the message names the field."""


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a recipient may be contacted, in the recipient's own local time."""

    start: ClockTime = "09:00"
    end: ClockTime = "20:00"
    days: list[Day] = msgspec.field(default_factory=lambda: list(DAYS))


class Pacing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    per_minute: Positive = 600  # this campaign's messages per minute, over every worker
    burst: Positive | None = None  # tokens that may be spent at once; default a second's worth (at least 1)


class Retry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What happens when a message fails: the next attempt (on the fallback channel
    if there is one, else the same channel) after `spacing_minutes`."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    spacing_minutes: Annotated[float, msgspec.Meta(ge=0)] = 30


class Cap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """No more than `max` attempts on `channel` within `days` per debt (collections) or
    address; none for `quiet_days` after a conversation about it."""

    channel: Channel
    max: Positive
    days: Annotated[float, msgspec.Meta(gt=0)]
    quiet_days: Annotated[float, msgspec.Meta(ge=0)] = 0


class VoicePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Campaign calls (channels.voice.campaign). Answering-machine detection tells who
    answered: a person hears the message with "press 1 for an agent, 9 to stop these
    calls"; a machine gets `machine_message` (a template, left after the beep) or, when it
    is empty, a hang-up. With `machine_retry` a machine counts as not reached, so the
    retry policy calls again (on the fallback channel when there is one). `dial_mode` says
    whether agents are on the line."""

    machine_message: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    machine_retry: bool = True
    # "message": the call plays the message and offers an agent on 1. "progressive" and
    # "predictive": agents are on the line; a person who answers goes straight to a free
    # agent (router.campaigns.dialing paces the calls for them), and hears the tenant's
    # abandon message when none is free.
    dial_mode: Literal["message", "progressive", "predictive"] = "message"
    # What the agent reads as a call of the campaign connects: a template over the
    # recipient's fields, shown beside the conversation (rendered in the bounded child).
    script: Annotated[str, msgspec.Meta(max_length=20_000)] = ""


class Template(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    subject: str = ""


class Variant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An A/B variant: a share of the audience (percent) gets these templates instead
    (a channel or locale it does not define falls back to the campaign's own)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    share: Annotated[int, msgspec.Meta(ge=1, le=100)]
    templates: dict[str, dict[str, Template]] = {}


class Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: CampaignId
    tenant: TenantId
    kind: Kind
    channel: Channel
    queue: str  # the queue that answers replies
    templates: dict[str, dict[str, Template]]  # channel -> locale -> template
    name: str = ""
    fallback_channel: Channel | None = None
    default_locale: str = "en"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    window: Window = msgspec.field(default_factory=Window)
    pacing: Pacing = msgspec.field(default_factory=Pacing)
    retry: Retry = msgspec.field(default_factory=Retry)
    caps: list[Cap] = []
    region: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "US"  # for numbers without a country code
    debt_field: str = "account"  # the recipient field naming the debt (collections caps)
    reply_days: Annotated[float, msgspec.Meta(gt=0)] = 30  # replies route to the campaign this long
    optout_text: str = "Reply STOP to opt out."  # appended to collections texts that lack it
    variants: list[Variant] = []  # A/B: shares add up to 100
    voice: VoicePolicy = msgspec.field(default_factory=VoicePolicy)  # calls: answering machines
    # A rendered message's size limit (UTF-8): rendering stops there, so a runaway template
    # fails its recipient instead of holding a worker; well under a stream entry's limit.
    max_message_kb: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64

    @property
    def channels(self) -> tuple[str, ...]:
        return (self.channel, self.fallback_channel) if self.fallback_channel else (self.channel,)

    def variant_of(self, seq: int) -> str:
        """The variant a recipient is in ("" without variants): fixed by its number, so a
        retry, a restart or another worker always picks the same one."""
        if not self.variants:
            return ""
        point = (seq * 2654435761) % 2**32 % 100  # Knuth's multiplicative hash spreads consecutive numbers
        for variant in self.variants:
            if point < variant.share:
                return variant.name
            point -= variant.share
        return self.variants[-1].name

    def effective_window(self) -> Window:
        """The campaign's window, narrowed to 08:00-21:00 for collections."""
        if self.kind != "collections":
            return self.window
        start = max(self.window.start, COLLECTIONS_HOURS[0])
        end = min(self.window.end, COLLECTIONS_HOURS[1])
        return Window(start=start, end=end, days=self.window.days)

    def effective_caps(self) -> list[Cap]:
        """The campaign's caps plus the legal ones for collections calls (the stricter wins)."""
        caps = list(self.caps)
        if self.kind == "collections":
            attempts, days, quiet = COLLECTIONS_CALL_CAP
            caps.append(Cap(channel="voice", max=attempts, days=days, quiet_days=quiet))
        return caps


class Recipient(msgspec.Struct, frozen=True, array_like=True):
    """One row of the audience, normalised; `fields` are what its templates may use."""

    seq: int  # 1, 2, ... in file order
    line: int  # the CSV line it came from
    phone: str = ""  # E.164
    email: str = ""  # lower-case
    timezone: str = ""  # IANA name from the file, else "" (the phone's region decides)
    locale: str = ""
    fields: dict[str, str] = {}
    zones: tuple[str, ...] = ()  # the phone number's possible time zones, worked out once at import


def other_identity(channel: str, recipient: Recipient) -> str:
    """The recipient's address of the other kind (email when texted or called, phone when
    emailed), as an identity, or "": the same person's, whose opt-outs count for every
    message to them under the tenant's opt_out_scope "person"."""
    if channel == "email":
        return identity("sms", recipient.phone) if recipient.phone else ""
    return identity("email", recipient.email) if recipient.email else ""


_encoder = msgspec.msgpack.Encoder()
_recipient_decoder = msgspec.msgpack.Decoder(Recipient)
_campaign_decoder = msgspec.json.Decoder(Campaign)


def encode_recipient(recipient: Recipient) -> bytes:
    return _encoder.encode(recipient)


def decode_recipient(data: bytes) -> Recipient:
    return _recipient_decoder.decode(data)


def encode_campaign(campaign: Campaign) -> bytes:
    return msgspec.json.encode(campaign)


def decode_campaign(data: bytes) -> Campaign:
    return _campaign_decoder.decode(data)


def parse_campaign(text: str, source: str = "campaign") -> Campaign:
    """A campaign from TOML (or JSON, when the text starts with "{"), with a clear error."""
    try:
        raw = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise CampaignError(f"{source}: not valid TOML or JSON: {exc}") from None
    try:
        campaign = msgspec.convert(raw, type=Campaign, strict=False)
    except msgspec.ValidationError as exc:
        raise CampaignError(f"{source}: {exc}") from None
    _check(campaign, source)
    return campaign


def load_campaign(path: str | Path) -> Campaign:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise CampaignError(f"{path}: {exc.strerror}") from None
    return parse_campaign(text, str(path))


def _check(campaign: Campaign, source: str) -> None:
    where = f"{source}: `$"
    for field in ("channel", "fallback_channel"):
        if getattr(campaign, field) not in (*CAMPAIGN_CHANNELS, None):
            raise CampaignError(f"{where}.{field}`: campaigns send by {', '.join(CAMPAIGN_CHANNELS)}")
    if campaign.fallback_channel == campaign.channel:
        raise CampaignError(f"{where}.fallback_channel`: the same as the channel")
    for channel in campaign.channels:
        locales = campaign.templates.get(channel)
        if not locales:
            raise CampaignError(f"{where}.templates.{channel}`: no template for the campaign's channel {channel}")
        if campaign.default_locale not in locales:
            raise CampaignError(f"{where}.templates.{channel}`: no template for the default locale")
        if channel == "email" and any(not t.subject for t in locales.values()):
            raise CampaignError(f"{where}.templates.email`: every email template needs a subject")
    for channel in campaign.templates:
        if channel not in campaign.channels:
            raise CampaignError(f"{where}.templates.{channel}`: the campaign does not send on {channel}")
    if campaign.variants:
        names = [v.name for v in campaign.variants]
        if len(set(names)) != len(names):
            raise CampaignError(f"{where}.variants`: variant names must be unique")
        if sum(v.share for v in campaign.variants) != 100:
            raise CampaignError(f"{where}.variants`: the shares must add up to 100")
        for index, variant in enumerate(campaign.variants):
            for channel in variant.templates:
                if channel not in campaign.channels:
                    raise CampaignError(
                        f"{where}.variants[{index}].templates.{channel}`: not a channel of the campaign"
                    )
    if campaign.voice.dial_mode != "message" and campaign.channel != "voice":
        raise CampaignError(f"{where}.voice.dial_mode`: agents on the line need channel = \"voice\"")
    if campaign.voice.script:
        try:
            sandboxed().parse(campaign.voice.script)
        except jinja2.TemplateSyntaxError as exc:
            raise CampaignError(f"{where}.voice.script`: line {exc.lineno}: {exc.message}") from None
    if campaign.voice.machine_message:
        try:
            sandboxed().parse(campaign.voice.machine_message)
        except jinja2.TemplateSyntaxError as exc:
            raise CampaignError(f"{where}.voice.machine_message`: line {exc.lineno}: {exc.message}") from None
    if campaign.window.start >= campaign.window.end:
        raise CampaignError(f"{where}.window`: start must come before end")
    if not campaign.window.days:
        raise CampaignError(f"{where}.window.days`: no day to send on")
    window = campaign.effective_window()
    if window.start >= window.end:
        raise CampaignError(f"{where}.window`: collections may only be sent between 08:00 and 21:00")
    for field in ("start", "end"):
        value = getattr(campaign, field)
        if value is not None and value.tzinfo is None:
            raise CampaignError(f"{where}.{field}`: give a time zone offset (e.g. 2026-12-01T09:00:00Z)")
    if campaign.start and campaign.end and campaign.start >= campaign.end:
        raise CampaignError(f"{where}.end`: before the start")


def check_against(campaign: Campaign, deployment: Deployment) -> None:
    """The tenant exists and has the campaign's queue; its campaign email could carry a
    working unsubscribe. Checked at create and again at launch (the deployment may change)."""
    try:
        tenant = deployment.tenant(campaign.tenant)
    except UnknownTenant:
        raise CampaignError(f"unknown tenant {campaign.tenant!r}") from None
    if campaign.queue not in {q.id for q in tenant.queues}:
        raise CampaignError(f"`$.queue`: tenant {tenant.id} has no queue {campaign.queue!r}")
    if "email" in campaign.channels and (problem := email_unsubscribe_problem(tenant)):
        raise CampaignError(f"an email campaign cannot go out: {problem}")


def email_unsubscribe_problem(tenant: Tenant) -> str:
    """Why the tenant's campaign email could not carry a working unsubscribe ("" when it can).
    Its List-Unsubscribe mailto: (workers/campaigns/unsubscribe.py) goes to the tenant's own
    address, which the smtp process receives; mail leaves from that address too."""
    if tenant.email.sender():
        return ""
    return (
        f"tenant {tenant.id} has no email address ([tenants.email] addresses) for its List-Unsubscribe "
        "mailto: (and to send from), so its campaign email could carry no working unsubscribe"
    )


def missing_dispositions(campaign: Campaign, deployment: Deployment) -> list[str]:
    """The kind's dispositions (promise to pay, paid, disputed...) the tenant's agents
    cannot record yet, because its `dispositions` list lacks them."""
    known = set(deployment.tenant(campaign.tenant).dispositions)
    return [d for d in DISPOSITIONS[campaign.kind] if d not in known]


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-/]*", name))


def placeless_zone(name: str) -> bool:
    """Whether a zone names no place: an abbreviation or fixed offset (EST, MST, HST, UTC,
    EST5EDT, Etc/GMT+5) or a legacy name without an area (Japan). EST is UTC-5 all year,
    while a New Yorker keeps daylight saving time (and "EST" in Sydney is another zone),
    so a window judged in it is an hour off half the year; only Area/Location says where."""
    return "/" not in name or name.startswith(("Etc/", "SystemV/"))
