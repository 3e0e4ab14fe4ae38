"""Configuration: one TOML file per deployment plus environment variables.

Read once at start-up into typed settings and passed in; no other module reads
the environment. A bad file stops start-up with a message that names the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from router.events import CHANNELS, TenantId
from router.hours import BusinessHours
from router.targets import TargetError, compile_target

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Strategy = Literal["longest_idle", "least_occupied", "round_robin", "sticky", "proficiency"]


class ConfigError(ValueError):
    """The deployment's configuration is unusable; the message names the field."""


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


class AfterHours(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["queue", "autoreply", "overflow"] = "queue"
    message: str = "We are closed right now; we will answer as soon as we open."
    queue: str = ""  # for overflow


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


class Agent(msgspec.Struct, forbid_unknown_fields=True):
    id: Name
    name: str = ""
    skills: dict[str, int] = {}
    languages: list[str] = []
    level: int = 1
    attributes: dict[str, str | int | float | bool | list[str]] = {}
    capacity: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}  # per channel, plus "total"
    phone: str = ""


class TwilioAccount(msgspec.Struct, forbid_unknown_fields=True):
    """A tenant's Twilio account. The auth token is never in the file: the file
    names the environment variable that holds it, read once at start-up."""

    account_sid: Annotated[str, msgspec.Meta(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]*$")]
    auth_token: str = ""  # filled from auth_token_env by load_deployment


class SmsChannel(msgspec.Struct, forbid_unknown_fields=True):
    """SMS for a tenant: its numbers (inbound: how the tenant is found; outbound: the sender)."""

    numbers: list[str] = []  # E.164; the first one sends unless a messaging service is set
    messaging_service_sid: str = ""
    help_text: str = "Reply STOP to stop messages, START to receive them again."
    stop_text: str = "You will receive no more messages from us. Reply START to resubscribe."
    start_text: str = "You are subscribed again. Reply STOP to stop, HELP for help."


class EmailChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Email for a tenant: the SMTP server accepts mail for these addresses and for any
    address of these domains (an exact address wins over another tenant's domain)."""

    addresses: list[str] = []  # e.g. ["help@acme.example"]
    domains: list[str] = []  # e.g. ["acme.example"]: every address @acme.example


class MenuOption(msgspec.Struct, forbid_unknown_fields=True):
    """One choice of the IVR menu: a key, words a caller may say instead, and the queue."""

    digit: Annotated[str, msgspec.Meta(pattern=r"^[0-9*#]$")]
    label: str  # what the menu says: "For billing, press 1"
    queue: str
    speech: list[str] = []  # e.g. ["billing", "invoice"]


class CallbackPolicy(msgspec.Struct, forbid_unknown_fields=True):
    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3  # dial attempts on busy / no answer
    spacing_s: Annotated[float, msgspec.Meta(ge=0)] = 300  # between attempts
    # ISO regions (e.g. "US", "CA") a callback may be dialled in; empty: the region of
    # the tenant's first voice number. Premium, shared-cost, VoIP, personal and
    # unknown numbers are refused whatever the region (toll fraud).
    regions: list[Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]] = []


class VoiceChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Calls for a tenant (Twilio Voice): numbers, the IVR, waiting, callbacks, voicemail."""

    numbers: list[str] = []  # E.164 numbers callers dial
    language: str = "en-US"
    greeting: str = "Thank you for calling."
    menu: list[MenuOption] = []  # empty: straight to the tenant's voice entry queue
    offer_callback: bool = True
    voicemail: bool = True  # after hours, and on request from the queue
    hold_music_url: str = ""  # played between announcements; empty: a pause
    expected_handle_seconds: Annotated[float, msgspec.Meta(gt=0)] = 240  # for the expected-wait estimate
    callback: CallbackPolicy = msgspec.field(default_factory=CallbackPolicy)


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
    dispositions: list[str] = msgspec.field(default_factory=lambda: ["resolved", "follow_up", "no_answer"])
    queues: list[Queue] = []
    agents: list[Agent] = []
    addresses: dict[str, list[str]] = {}  # channel -> the tenant's own numbers/addresses
    twilio: TwilioAccount | None = None  # without it, SMS and voice go to the sandbox outbox
    sms: SmsChannel = msgspec.field(default_factory=SmsChannel)
    voice: VoiceChannel = msgspec.field(default_factory=VoiceChannel)
    email: EmailChannel = msgspec.field(default_factory=EmailChannel)

    def queue(self, queue_id: str) -> Queue:
        for queue in self.queues:
            if queue.id == queue_id:
                return queue
        raise KeyError(queue_id)

    def entry_queue(self, channel: str) -> str:
        return self.entry.get(channel) or self.entry.get("default") or self.queues[0].id


class Deployment(msgspec.Struct, forbid_unknown_fields=True):
    tenants: list[Tenant]

    def tenant(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

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


DEFAULT_CAPACITY = {"voice": 1, "webchat": 3, "sms": 3, "telegram": 3, "email": 5, "fax": 5}


class Settings(msgspec.Struct, kw_only=True):
    """Process settings from the environment."""

    redis_url: str | None = None  # None: the embedded store
    cluster: bool = False
    config_path: str | None = None  # None: the demo deployment
    consumer: str = ""  # this process's consumer name in the groups
    claim_idle_ms: int = 30_000  # pending entries idle this long are taken over
    max_deliveries: int = 5  # then the entry goes to the dead-letter stream
    batch: int = 100
    block_ms: int = 1000
    stream_keep_hours: float = 168.0  # acknowledged stream entries older than this are trimmed
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    public_url: str = ""  # the URL providers call us at (behind a proxy); default http://host:port
    twilio_signatures: bool = True  # off only for local development: every webhook is then trusted
    twilio_api_base: str = ""  # e.g. a local recording server in tests; default: Twilio's own API
    # signs and checks the webhooks of tenants without a Twilio account (the offline sandbox,
    # `contactrouter simulate sms`); empty: such webhooks are refused
    twilio_sandbox_token: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_max_bytes: int = 25 * 1024 * 1024  # a bigger message is refused (552)
    attachment_dir: str = ""  # the attachment store; empty: var/attachments under the working directory
    attachment_max_bytes: int = 20 * 1024 * 1024  # a bigger attachment is left out (and noted)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("REDIS_URL") or None
        cluster = env.get("REDIS_CLUSTER", "").lower() in {"1", "true", "yes"}
        try:
            return cls(
                redis_url=url,
                cluster=cluster,
                config_path=env.get("CONTACTROUTER_CONFIG") or None,
                consumer=env.get("CONTACTROUTER_CONSUMER", ""),
                claim_idle_ms=int(env.get("CONTACTROUTER_CLAIM_IDLE_MS", 30_000)),
                max_deliveries=int(env.get("CONTACTROUTER_MAX_DELIVERIES", 5)),
                batch=int(env.get("CONTACTROUTER_BATCH", 100)),
                block_ms=int(env.get("CONTACTROUTER_BLOCK_MS", 1000)),
                stream_keep_hours=float(env.get("CONTACTROUTER_STREAM_KEEP_HOURS", 168)),
                host=env.get("HOST", "127.0.0.1"),
                port=int(env.get("PORT", 8080)),
                log_level=env.get("LOG_LEVEL", "INFO").upper(),
                public_url=env.get("PUBLIC_URL", "").rstrip("/"),
                twilio_signatures=env.get("TWILIO_SIGNATURES", "on").lower() not in {"off", "0", "false", "no"},
                twilio_api_base=env.get("TWILIO_API_BASE", "").rstrip("/"),
                twilio_sandbox_token=env.get("TWILIO_SANDBOX_TOKEN", ""),
                smtp_host=env.get("SMTP_HOST", "127.0.0.1"),
                smtp_port=int(env.get("SMTP_PORT", 2525)),
                smtp_max_bytes=int(env.get("SMTP_MAX_BYTES", 25 * 1024 * 1024)),
                attachment_dir=env.get("ATTACHMENT_DIR", ""),
                attachment_max_bytes=int(env.get("ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024)),
            )
        except ValueError as exc:
            raise ConfigError(f"environment: {exc}") from None


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


def resolve_secrets(deployment: Deployment, env: dict[str, str] | os._Environ) -> Deployment:
    """Fill each tenant's provider secrets from the environment variables its file names."""
    tenants = []
    for index, tenant in enumerate(deployment.tenants):
        if tenant.twilio is not None and not tenant.twilio.auth_token:
            token = env.get(tenant.twilio.auth_token_env, "")
            if not token:
                raise ConfigError(
                    f"`$.tenants[{index}].twilio.auth_token_env`: environment variable "
                    f"{tenant.twilio.auth_token_env} is not set"
                )
            tenant = msgspec.structs.replace(tenant, twilio=msgspec.structs.replace(tenant.twilio, auth_token=token))
        tenants.append(tenant)
    return msgspec.structs.replace(deployment, tenants=tenants)


def parse_deployment(text: str, source: str = "config") -> Deployment:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        deployment = msgspec.convert(raw, type=Deployment)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check(deployment, source)
    return deployment


def _check(deployment: Deployment, source: str) -> None:
    """Cross-field checks msgspec cannot express; each error names its field."""
    seen_tenants: set[str] = set()
    sms_numbers: dict[str, str] = {}
    voice_numbers: dict[str, str] = {}
    mail_names: dict[str, str] = {}  # lower-case address or "@domain" -> tenant
    for t_index, tenant in enumerate(deployment.tenants):
        where = f"{source}: `$.tenants[{t_index}]`"
        if tenant.id in seen_tenants:
            raise ConfigError(f"{where}.id: tenant {tenant.id!r} is defined twice")
        seen_tenants.add(tenant.id)
        if not tenant.queues:
            raise ConfigError(f"{where}.queues: a tenant needs at least one queue")
        queue_ids = [q.id for q in tenant.queues]
        if len(set(queue_ids)) != len(queue_ids):
            raise ConfigError(f"{where}.queues: queue ids must be unique")
        for channel, queue_id in tenant.entry.items():
            if channel != "default" and channel not in CHANNELS:
                raise ConfigError(f"{where}.entry: unknown channel {channel!r}")
            if queue_id not in queue_ids:
                raise ConfigError(f"{where}.entry.{channel}: unknown queue {queue_id!r}")
        for q_index, queue in enumerate(tenant.queues):
            qwhere = f"{where}.queues[{q_index}]"
            for channel in queue.channels:
                if channel not in CHANNELS:
                    raise ConfigError(f"{qwhere}.channels: unknown channel {channel!r}")
            expressions = [("target", queue.target)] + [
                (f"escalation[{i}].widen", s.widen) for i, s in enumerate(queue.escalation) if s.widen
            ]
            for field, expression in expressions:
                try:
                    compile_target(expression)
                except TargetError as exc:
                    raise ConfigError(f"{qwhere}.{field}: {exc}") from None
            for i, step in enumerate(queue.escalation):
                if step.overflow and step.overflow not in queue_ids:
                    raise ConfigError(f"{qwhere}.escalation[{i}].overflow: unknown queue {step.overflow!r}")
            others = [(queue.sla.breach_queue, "sla.breach_queue"), (queue.after_hours.queue, "after_hours.queue")]
            for other, field in others:
                if other and other not in queue_ids:
                    raise ConfigError(f"{qwhere}.{field}: unknown queue {other!r}")
            if queue.after_hours.action == "overflow" and not queue.after_hours.queue:
                raise ConfigError(f"{qwhere}.after_hours.queue: overflow needs a queue")
        for n_index, number in enumerate(tenant.sms.numbers):
            if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
                raise ConfigError(f"{where}.sms.numbers[{n_index}]: {number!r} is not an E.164 number")
            if number in sms_numbers:
                raise ConfigError(f"{where}.sms.numbers[{n_index}]: {number} already belongs to {sms_numbers[number]}")
            sms_numbers[number] = tenant.id
        for n_index, number in enumerate(tenant.voice.numbers):
            if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
                raise ConfigError(f"{where}.voice.numbers[{n_index}]: {number!r} is not an E.164 number")
            if number in voice_numbers:
                raise ConfigError(
                    f"{where}.voice.numbers[{n_index}]: {number} already belongs to {voice_numbers[number]}"
                )
            voice_numbers[number] = tenant.id
        _check_email(tenant, where, mail_names)
        for m_index, option in enumerate(tenant.voice.menu):
            if option.queue not in queue_ids:
                raise ConfigError(f"{where}.voice.menu[{m_index}].queue: unknown queue {option.queue!r}")
        agent_ids = [a.id for a in tenant.agents]
        if len(set(agent_ids)) != len(agent_ids):
            raise ConfigError(f"{where}.agents: agent ids must be unique")
        for a_index, agent in enumerate(tenant.agents):
            for channel in agent.capacity:
                if channel != "total" and channel not in CHANNELS:
                    raise ConfigError(f"{where}.agents[{a_index}].capacity: unknown channel {channel!r}")


def _check_email(tenant: Tenant, where: str, seen: dict[str, str]) -> None:
    """Each email address and domain belongs to one tenant, and looks like one."""
    names = [("addresses", a, a.lower()) for a in tenant.email.addresses]
    names += [("domains", d, "@" + d.lower()) for d in tenant.email.domains]
    counters = {"addresses": 0, "domains": 0}
    for field, raw, name in names:
        index = counters[field]
        counters[field] += 1
        local, _, domain = name.rpartition("@")
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain) or (field == "addresses" and not local):
            noun = "address" if field == "addresses" else "domain"
            raise ConfigError(f"{where}.email.{field}[{index}]: {raw!r} is not an email {noun}")
        if name in seen:
            raise ConfigError(f"{where}.email.{field}[{index}]: {raw} already belongs to {seen[name]}")
        seen[name] = tenant.id


def capacity_of(agent: Agent) -> dict[str, int]:
    """Per-channel capacity with defaults, and a total that defaults to the largest one."""
    capacity = dict(DEFAULT_CAPACITY)
    capacity.update({k: v for k, v in agent.capacity.items() if k != "total"})
    capacity["total"] = agent.capacity.get("total", max(capacity.values()))
    return capacity
