"""The deployment: one TOML file of tenants, each with its queues, agents and channels.

Parsed once at start-up into Structs and passed in. Each section checks itself where
it is defined (`router.config.routing` for queues and agents, one module per channel);
`Tenant` checks that what its sections name (queues, the fax sender) exists, and
`Deployment` that a number or address belongs to one tenant. A bad file stops
start-up with a message that names the field's path. The process's own settings come
from the environment: `router.settings`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from router.config import telegram as _telegram
from router.config.email import EmailChannel
from router.config.fax import FaxChannel
from router.config.fields import DESCRIPTIONS, AccountSid, ApiKeySid, EnvName, FieldError, Seconds
from router.config.knowledge import KnowledgeBase
from router.config.routing import Agent, Queue, capacity_of
from router.config.sms import SmsChannel
from router.config.survey import Survey
from router.config.telegram import TelegramChannel
from router.config.voice import VoiceChannel
from router.config.webchat import WebchatChannel
from router.errors import ConfigError, UnknownTenant
from router.events import CHANNELS, TenantId
from router.keyring import KeyRing


class TwilioAccount(msgspec.Struct, forbid_unknown_fields=True):
    """A tenant's Twilio account (SMS and voice). The auth token is never in the file:
    the file names the environment variable that holds it, read once at start-up. During
    a rotation it holds the new token and the old one ("NEW,OLD", router.keyring): the new
    one calls Twilio, and webhooks signed with either are accepted.

    An API key (its SID, and the variable holding its secret) signs the access tokens
    of the agents' softphone (the Voice JavaScript SDK); without one, agents without a
    phone cannot take calls."""

    account_sid: AccountSid
    auth_token_env: EnvName
    api_key_sid: ApiKeySid | None = None
    api_key_secret_env: EnvName | None = None
    auth_token: str = ""  # filled from auth_token_env by load_deployment: the newest token
    auth_tokens: tuple[str, ...] = ()  # every token listed there, newest first
    api_key_secret: str = ""  # filled from api_key_secret_env by load_deployment

    def __post_init__(self) -> None:
        if (self.api_key_sid is None) != (self.api_key_secret_env is None):
            raise FieldError("api_key_sid", "an API key needs both api_key_sid and api_key_secret_env")

    def auth_ring(self) -> KeyRing:
        """The tokens a webhook's signature may be made with."""
        return KeyRing(self.auth_tokens or ((self.auth_token,) if self.auth_token else ()))

    @property
    def softphone(self) -> bool:
        """Whether the account can sign the softphone's access tokens."""
        return self.api_key_sid is not None


class Tenant(msgspec.Struct, forbid_unknown_fields=True):
    id: TenantId
    name: str = ""
    timezone: str = "UTC"
    brand_color: str = "#1f6feb"
    reservation_timeout: Seconds = 30
    max_missed_offers: Annotated[int, msgspec.Meta(ge=1)] = 3
    calls_block_other_work: bool = True  # an agent on a call is offered nothing else meanwhile
    wrapup_seconds: Seconds = 0
    entry: dict[str, str] = {}  # channel (or "default") -> queue for new contacts
    # the customer's language (given by the channel or detected from the first message: "yue", "zh",
    # "en", "zh-Hant") -> queue for new contacts, before `entry`; a tag's language alone matches too
    entry_by_language: dict[str, str] = {}
    dispositions: list[str] = msgspec.field(default_factory=lambda: ["resolved", "follow_up", "no_answer"])
    # with an archive (DATABASE_URL): days a closed conversation stays in Redis (None: CONTACTROUTER_HOT_DAYS),
    # and days after its close that the archive keeps it (0: for ever); a message's files may go sooner, the
    # message staying (0: kept as long as their conversation; recordings: [tenants.voice] recording_retention_days)
    hot_days: Annotated[float, msgspec.Meta(ge=0)] | None = None
    retention_days: Annotated[int, msgspec.Meta(ge=0)] = 0
    attachments_retention_days: Annotated[int, msgspec.Meta(ge=0)] = 0
    queues: list[Queue] = []
    agents: list[Agent] = []
    addresses: dict[str, list[str]] = {}  # channel -> the tenant's own numbers/addresses
    twilio: TwilioAccount | None = None  # without it, SMS and voice go to the sandbox outbox
    sms: SmsChannel = msgspec.field(default_factory=SmsChannel)
    voice: VoiceChannel = msgspec.field(default_factory=VoiceChannel)
    email: EmailChannel = msgspec.field(default_factory=EmailChannel)
    telegram: TelegramChannel | None = None  # without a bot, Telegram replies go to the sandbox outbox
    webchat: WebchatChannel | None = None  # without it, the tenant has no chat widget
    fax: FaxChannel = msgspec.field(default_factory=FaxChannel)
    # the inbox's TOTP second factor for this tenant's agents (supervisors and admins always need one)
    second_factor_for_agents: Literal["optional", "required"] = "optional"
    # what a customer's opt-out (SMS STOP, a pressed 9, an unsubscribe, do-not-contact) covers for
    # campaigns: every channel of the person ("person": consent revoked "by any reasonable means"),
    # or only the channel and address it came from ("channel")
    opt_out_scope: Literal["person", "channel"] = "person"
    knowledge: KnowledgeBase = msgspec.field(default_factory=KnowledgeBase)  # its articles' categories and writers
    survey: Survey | None = None  # without it, nobody is asked to rate a conversation

    def __post_init__(self) -> None:
        """Queues and agents are there and unique, and every queue a section names exists."""
        if not self.queues:
            raise FieldError("queues", "a tenant needs at least one queue")
        queue_ids = {q.id for q in self.queues}
        if len(queue_ids) != len(self.queues):
            raise FieldError("queues", "queue ids must be unique")
        if len({a.id for a in self.agents}) != len(self.agents):
            raise FieldError("agents", "agent ids must be unique")
        for channel in self.entry:
            if channel != "default" and channel not in CHANNELS:
                raise FieldError("entry", f"unknown channel {channel!r}")
        for field, queue in self._queue_references():
            if queue not in queue_ids:
                raise FieldError(field, f"unknown queue {queue!r}")
        if self.survey is not None:
            for disposition in self.survey.dispositions:
                if disposition not in self.dispositions:
                    raise FieldError("survey.dispositions", f"unknown disposition {disposition!r}")
        try:
            self.fax.check_sender(self.email)
        except FieldError as exc:
            raise FieldError(f"fax.{exc.field}", exc.problem) from None

    def _queue_references(self) -> Iterator[tuple[str, str]]:
        """(field, queue id) for every field of the tenant that names one of its queues."""
        for channel, queue in self.entry.items():
            yield f"entry.{channel}", queue
        for language, queue in self.entry_by_language.items():
            yield f"entry_by_language.{language}", queue
        for index, queue in enumerate(self.queues):
            for field, other in queue.queue_references():
                yield f"queues[{index}].{field}", other
        sections = [("voice", self.voice), ("telegram", self.telegram), ("webchat", self.webchat)]
        for name, section in sections:
            if section is not None:
                for field, queue in section.queue_references():
                    yield f"{name}.{field}", queue

    def queue(self, queue_id: str) -> Queue:
        for queue in self.queues:
            if queue.id == queue_id:
                return queue
        raise KeyError(queue_id)

    def entry_queue(self, channel: str, language: str = "") -> str:
        """The queue a new contact enters: by its language, if the tenant routes it, else by channel."""
        if language and self.entry_by_language:
            tags = {tag.lower(): queue for tag, queue in self.entry_by_language.items()}
            wanted = language.lower().replace("_", "-")
            found = tags.get(wanted) or tags.get(wanted.split("-")[0])
            if found:
                return found
        return self.entry.get(channel) or self.entry.get("default") or self.queues[0].id


class Deployment(msgspec.Struct, forbid_unknown_fields=True):
    tenants: list[Tenant]

    def __post_init__(self) -> None:
        """Each tenant once; each number, address and mail domain belongs to one tenant."""
        ids: set[str] = set()
        owners: dict[tuple[str, str], str] = {}  # (channel, number or address) -> its tenant
        for index, tenant in enumerate(self.tenants):
            if tenant.id in ids:
                raise FieldError(f"tenants[{index}].id", f"tenant {tenant.id!r} is defined twice")
            ids.add(tenant.id)
            names = [("sms", f"sms.numbers[{i}]", n, n) for i, n in enumerate(tenant.sms.numbers)]
            names += [("voice", f"voice.numbers[{i}]", n, n) for i, n in enumerate(tenant.voice.numbers)]
            names += [("email", f"email.{field}", raw, key) for field, raw, key in tenant.email.names()]
            for channel, field, raw, key in names:
                if (channel, key) in owners:
                    raise FieldError(f"tenants[{index}].{field}", f"{raw} already belongs to {owners[channel, key]}")
                owners[channel, key] = tenant.id

    def tenant(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise UnknownTenant(tenant_id, (t.id for t in self.tenants))

    def tenant_by_number(self, number: str, channel: str = "sms") -> Tenant | None:
        """The tenant that owns a number (E.164) on a channel (sms or voice), if any."""
        for tenant in self.tenants:
            if number in (tenant.voice.numbers if channel == "voice" else tenant.sms.numbers):
                return tenant
        return None

    def tenant_by_email(self, address: str) -> Tenant | None:
        """The tenant that receives mail for an address: its own address, else its domain."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        for tenant in self.tenants:
            if address in (a.lower() for a in tenant.email.addresses):
                return tenant
        for tenant in self.tenants:
            if domain and domain in (d.lower() for d in tenant.email.domains):
                return tenant
        return None


def load_deployment(path: str | Path | None) -> Deployment:
    """Parse and check a deployment file; None loads the bundled demo deployment."""
    if path is None:
        text = resources.files("router").joinpath("demo.toml").read_text("utf-8")
        source = "demo.toml"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        source = str(path)
    return resolve_secrets(parse_deployment(text, source), os.environ)


def parse_deployment(text: str, source: str = "config") -> Deployment:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        deployment = msgspec.convert(raw, type=Deployment)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc, raw)}") from None
    # Checked here, not in TelegramChannel.__post_init__: resolve_secrets fills these
    # fields, and msgspec.structs.replace runs __post_init__ again.
    for index, tenant in enumerate(deployment.tenants):
        for field in _telegram.SECRETS if tenant.telegram is not None else ():
            if getattr(tenant.telegram, field):
                raise ConfigError(
                    f"{source}: `$.tenants[{index}].telegram.{field}`: "
                    "secrets never go in the file; name an environment variable"
                )
        if tenant.email.imap is not None and tenant.email.imap.password:
            raise ConfigError(
                f"{source}: `$.tenants[{index}].email.imap.password`: "
                "secrets never go in the file; name an environment variable (password_env)"
            )
        if tenant.twilio is not None and tenant.twilio.api_key_secret:
            raise ConfigError(
                f"{source}: `$.tenants[{index}].twilio.api_key_secret`: "
                "secrets never go in the file; name an environment variable (api_key_secret_env)"
            )
    return deployment


def warnings_of(deployment: Deployment) -> list[str]:
    """What a deployment allows but probably does not mean (`config check` prints them;
    start-up goes ahead): an agent who may be offered calls and could never answer one, a
    mailbox fetched in the clear over the network."""
    found = []
    for tenant in deployment.tenants:
        imap = tenant.email.imap
        if imap is not None and imap.tls == "none" and imap.host.lower() not in ("127.0.0.1", "::1", "localhost"):
            found.append(
                f"tenant {tenant.id}: email.imap.tls is none: the mailbox password and mail cross the network "
                f"to {imap.host} in the clear (use tls or starttls)"
            )
        if not tenant.voice.numbers or tenant.twilio is None or tenant.twilio.softphone:
            continue  # no calls; the sandbox's simulated softphone; or the softphone rings
        for agent in tenant.agents:
            if capacity_of(agent)["voice"] > 0 and not agent.phone:
                found.append(
                    f"tenant {tenant.id}: agent {agent.id} can take voice calls but has neither a phone nor "
                    "the softphone (set the agent's phone, or [tenants.twilio] api_key_sid and api_key_secret_env, "
                    "or give the agent capacity voice = 0)"
                )
    return found


def _explain(exc: msgspec.ValidationError, raw: dict[str, Any]) -> str:
    """The message of a refused file, as `$.path.to.field`: what is wrong.

    msgspec says where the Struct that refused is (" - at `$.tenants[0].fax`"); a
    FieldError from its __post_init__ says which of its fields, and a pattern that did
    not match is named for what it stands for ("is not an E.164 number")."""
    message, _, where = str(exc).partition(" - at `")
    path = where.rstrip("`") or "$"
    if isinstance(exc.__cause__, FieldError):
        field, problem = exc.__cause__.field, exc.__cause__.problem
        path += ("" if not field or field.startswith("[") else ".") + field
        return f"`{path}`: {problem}"
    pattern = message.removeprefix("Expected `str` matching regex ")  # msgspec shows the pattern's repr
    if described := DESCRIPTIONS.get(pattern):
        value = _at(raw, path)
        return f"`{path}`: {'' if value is None else f'{value!r} '}is not {described}"
    return str(exc)


def _at(raw: Any, path: str) -> Any:
    """The value at a msgspec path ($.a[0].b) of the parsed TOML, or None."""
    for name, index in re.findall(r"\.([^.\[]+)|\[([^\]]*)\]", path):
        try:
            raw = raw[name] if name else raw[int(index)]  # a dict's key shows as [...]: not found
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return raw


def resolve_secrets(deployment: Deployment, env: Mapping[str, str]) -> Deployment:
    """Fill each tenant's provider secrets from the environment variables its file names."""
    tenants = []
    for index, tenant in enumerate(deployment.tenants):
        where = f"$.tenants[{index}]"
        if tenant.twilio is not None and not tenant.twilio.auth_token:
            tokens = KeyRing.parse(env.get(tenant.twilio.auth_token_env, ""))
            if not tokens:
                raise ConfigError(
                    f"`{where}.twilio.auth_token_env`: environment variable {tenant.twilio.auth_token_env} is not set"
                )
            twilio = msgspec.structs.replace(tenant.twilio, auth_token=tokens.current, auth_tokens=tokens.keys)
            tenant = msgspec.structs.replace(tenant, twilio=twilio)
        if tenant.twilio is not None and tenant.twilio.api_key_secret_env and not tenant.twilio.api_key_secret:
            secret = env.get(tenant.twilio.api_key_secret_env, "")
            if not secret:
                raise ConfigError(
                    f"`{where}.twilio.api_key_secret_env`: environment variable "
                    f"{tenant.twilio.api_key_secret_env} is not set"
                )
            tenant = msgspec.structs.replace(
                tenant, twilio=msgspec.structs.replace(tenant.twilio, api_key_secret=secret)
            )
        if tenant.email.imap is not None and not tenant.email.imap.password:
            password = env.get(tenant.email.imap.password_env, "")
            if not password:
                raise ConfigError(
                    f"`{where}.email.imap.password_env`: environment variable "
                    f"{tenant.email.imap.password_env} is not set"
                )
            imap = msgspec.structs.replace(tenant.email.imap, password=password)
            tenant = msgspec.structs.replace(tenant, email=msgspec.structs.replace(tenant.email, imap=imap))
        if tenant.telegram is not None and not tenant.telegram.token:
            tenant = msgspec.structs.replace(
                tenant, telegram=_telegram.resolve(tenant.telegram, env, f"{where}.telegram")
            )
        if tenant.webchat is not None and tenant.webchat.identity_secret_env and not tenant.webchat.identity_secret:
            secrets = KeyRing.parse(env.get(tenant.webchat.identity_secret_env, ""))
            # an HMAC key a visitor could guess would let anyone pose as a customer
            if not secrets or any(len(secret) < 16 for secret in secrets.keys):
                raise ConfigError(
                    f"`{where}.webchat.identity_secret_env`: environment variable "
                    f"{tenant.webchat.identity_secret_env} is not set or a key is shorter than 16 characters"
                )
            webchat = msgspec.structs.replace(
                tenant.webchat, identity_secret=secrets.current, identity_secrets=secrets.keys
            )
            tenant = msgspec.structs.replace(tenant, webchat=webchat)
        tenants.append(tenant)
    return msgspec.structs.replace(deployment, tenants=tenants)
