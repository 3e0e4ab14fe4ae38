"""Configuration: one TOML file per deployment plus environment variables.

Read once at start-up into typed settings and passed in; no other module reads
the environment. A bad file stops start-up with a message that names the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

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
    # Outbound mail leaves from this address (one the server receives for, so replies
    # come back); default: the first of `addresses`. from_name is its display name.
    from_address: str = ""
    from_name: str = ""  # default: the tenant's name

    def sender(self) -> str:
        """The address outbound mail leaves from ("" when the tenant has none)."""
        return (self.from_address or (self.addresses[0] if self.addresses else "")).lower()


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


EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]*$")]
# What Telegram accepts as a webhook's secret_token (1-256 of these characters).
TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class TelegramChannel(msgspec.Struct, forbid_unknown_fields=True):
    """A tenant's Telegram bot. Its token, webhook secret and deep-link key are never in
    the file: the file names the environment variables that hold them."""

    token_env: EnvName
    mode: Literal["webhook", "polling"] = "webhook"  # polling: the `telegram` process asks Telegram
    secret_env: EnvName | None = None  # X-Telegram-Bot-Api-Secret-Token; required in webhook mode
    # /start deep links (t.me/BOT?start=PAYLOAD): a payload listed here routes to its queue
    start_queues: dict[str, str] = {}
    # signs /start payloads that carry a customer's id (`contactrouter telegram link`)
    link_key_env: EnvName | None = None
    token: str = ""  # filled from the environment by load_deployment
    webhook_secret: str = ""
    link_key: str = ""


HexColor = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")]
# A web page's origin as browsers send it: scheme, host and an optional port, no path.
WebOrigin = Annotated[str, msgspec.Meta(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]
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
    greeting: str = "Hi! How can we help you today?"
    color: HexColor | None = None  # default: the tenant's brand_color
    text_color: HexColor = "#ffffff"
    offline_message: str = "We are offline right now. Leave your email and a message, and we will write back."
    hours: BusinessHours | None = None  # default: the hours of the tenant's webchat entry queue
    prechat: list[PrechatField] = []  # asked before the first message
    prechat_required: list[PrechatField] = []
    topics: list[ChatTopic] = []  # the "topic" field's choices, each routing to its queue
    identity_secret_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]*$")] | None = None
    identity_secret: str = ""  # filled from identity_secret_env by load_deployment
    demo_page: bool = False  # serve /webchat/{tenant}/demo, a page showing the widget
    limits: WebchatLimits = msgspec.field(default_factory=WebchatLimits)


class FaxGateway(msgspec.Struct, forbid_unknown_fields=True):
    """A fax-to-email service: how its mail is recognised and read, and where replies go.

    The patterns are Python regular expressions (case-insensitive), checked at load."""

    name: Name
    from_addresses: list[str] = []  # its mail comes From (or with a return path) one of these
    from_domains: list[str] = []  # ... or any address of these domains
    number_pattern: str = ""  # names a group `number` (and may name `pages`)
    pages_pattern: str = ""  # names a group `pages`: the page count the gateway claims
    search_in: Literal["subject", "body", "both"] = "both"
    region: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")] = "US"  # for numbers without a country code
    outbound_address: str = ""  # email-to-fax, e.g. "{number}@fax.gateway.example"; empty: receive only
    number_format: Literal["e164", "e164_digits", "national_digits"] = "e164_digits"  # {number} in it
    # its confirmation and failure mails; a group `ref` may name our Message-ID, `reason` the failure
    status_pattern_ok: str = ""
    status_pattern_failed: str = ""
    # CIDRs its mail servers connect to the smtp process from: a From address is easily
    # forged, so mail that claims to be the gateway's from elsewhere is ordinary email.
    # Empty: only mail handed over by our own mail servers (Settings.smtp_trusted_networks).
    trusted_networks: list[str] = []


class FaxChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Fax for a tenant: the gateways whose mail (to the tenant's email addresses) is fax."""

    gateways: list[FaxGateway] = []
    address: str = ""  # the tenant's address faxes are sent from (one of its email addresses/domains)


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
    telegram: TelegramChannel | None = None  # without a bot, Telegram replies go to the sandbox outbox
    webchat: WebchatChannel | None = None  # without it, the tenant has no chat widget
    fax: FaxChannel = msgspec.field(default_factory=FaxChannel)

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
    # a send cut short (its dispatcher died) is reconciled with the provider after this;
    # it must exceed the slowest provider call
    send_lease_ms: int = 120_000
    dispatch_concurrency: int = 16  # sends in flight at once per dispatch process
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
    smtp_tls_cert: str = ""  # inbound STARTTLS: certificate chain (PEM) and its key; both or neither
    smtp_tls_key: str = ""
    smtp_require_starttls: bool = False  # refuse mail on a connection that did not STARTTLS
    # CIDRs of our own mail servers that hand mail to the smtp process (the MX in front of
    # it, the relay that delivers its bounces): only their DSNs mark messages failed
    smtp_trusted_networks: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # the authserv-id of the Authentication-Results those servers add (RFC 8601); empty: not read
    smtp_authserv_id: str = ""
    # Outbound mail goes through this relay; no host: every email goes to the sandbox outbox.
    smtp_relay_host: str = ""
    smtp_relay_port: int = 587
    smtp_relay_user: str = ""
    smtp_relay_password: str = ""  # from the environment only; never logged
    smtp_relay_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_relay_ca_file: str = ""  # trust this CA bundle for the relay (a private CA); default: the system's
    telegram_api_base: str = ""  # e.g. a local Bot API server in tests; default: api.telegram.org
    # signs web chat visitors' tokens; empty: the web process keeps a generated one in the store
    webchat_secret: str = ""
    # reverse proxies in front of the web process that append to X-Forwarded-For: the client's
    # address (for web chat flood limits) is that many entries from its end; 0: the peer address
    trusted_proxy_hops: int = 0
    metrics_port: int = 0  # roles other than web serve /metrics here; 0: none (web serves it on PORT)

    @property
    def base_url(self) -> str:
        """Where providers and browsers reach the web process: PUBLIC_URL, else host and port."""
        return self.public_url or f"http://{self.host}:{self.port}"

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
                claim_idle_ms=_number(env, "CONTACTROUTER_CLAIM_IDLE_MS", 30_000, minimum=1),
                max_deliveries=_number(env, "CONTACTROUTER_MAX_DELIVERIES", 5, minimum=1),
                send_lease_ms=_number(env, "CONTACTROUTER_SEND_LEASE_MS", 120_000, minimum=1),
                dispatch_concurrency=_number(env, "CONTACTROUTER_DISPATCH_CONCURRENCY", 16, minimum=1),
                batch=_number(env, "CONTACTROUTER_BATCH", 100, minimum=1),
                block_ms=_number(env, "CONTACTROUTER_BLOCK_MS", 1000, minimum=1),  # 0: XREADGROUP would block for ever
                stream_keep_hours=_number(env, "CONTACTROUTER_STREAM_KEEP_HOURS", 168, float),
                host=env.get("HOST", "127.0.0.1"),
                port=_number(env, "PORT", 8080),
                log_level=env.get("LOG_LEVEL", "INFO").upper(),
                public_url=env.get("PUBLIC_URL", "").rstrip("/"),
                twilio_signatures=env.get("TWILIO_SIGNATURES", "on").lower() not in {"off", "0", "false", "no"},
                twilio_api_base=env.get("TWILIO_API_BASE", "").rstrip("/"),
                twilio_sandbox_token=env.get("TWILIO_SANDBOX_TOKEN", ""),
                smtp_host=env.get("SMTP_HOST", "127.0.0.1"),
                smtp_port=_number(env, "SMTP_PORT", 2525),
                smtp_max_bytes=_number(env, "SMTP_MAX_BYTES", 25 * 1024 * 1024, minimum=1),
                attachment_dir=env.get("ATTACHMENT_DIR", ""),
                attachment_max_bytes=_number(env, "ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024, minimum=1),
                smtp_tls_cert=env.get("SMTP_TLS_CERT", ""),
                smtp_tls_key=env.get("SMTP_TLS_KEY", ""),
                smtp_require_starttls=env.get("SMTP_REQUIRE_STARTTLS", "").lower() in {"1", "true", "yes", "on"},
                smtp_trusted_networks=_networks(env.get("SMTP_TRUSTED_NETWORKS", "127.0.0.0/8,::1/128")),
                smtp_authserv_id=env.get("SMTP_AUTHSERV_ID", "").strip().lower(),
                smtp_relay_host=env.get("SMTP_RELAY_HOST", ""),
                smtp_relay_port=_number(env, "SMTP_RELAY_PORT", _relay_port(env.get("SMTP_RELAY_TLS", ""))),
                smtp_relay_user=env.get("SMTP_RELAY_USER", ""),
                smtp_relay_password=env.get("SMTP_RELAY_PASSWORD", ""),
                smtp_relay_tls=_relay_tls(env.get("SMTP_RELAY_TLS", "")),
                smtp_relay_ca_file=env.get("SMTP_RELAY_CA_FILE", ""),
                telegram_api_base=env.get("TELEGRAM_API_BASE", "").rstrip("/"),
                webchat_secret=env.get("WEBCHAT_SECRET", ""),
                trusted_proxy_hops=_number(env, "TRUSTED_PROXY_HOPS", 0),
                metrics_port=_number(env, "METRICS_PORT", 0),
            )
        except ValueError as exc:
            raise ConfigError(f"environment: {exc}") from None


def _number(env: dict[str, str], name: str, default: int | float, kind: type = int, minimum: int = 0) -> Any:
    """The number in variable `name` (blank or unset: default), at least `minimum`;
    ValueError names the variable."""
    value = env.get(name) or default
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if number < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, not {value!r}")
    return number


def _networks(value: str) -> list[str]:
    """Comma-separated CIDRs (SMTP_TRUSTED_NETWORKS), each checked; ValueError names a bad one."""
    networks = [n.strip() for n in value.split(",") if n.strip()]
    for network in networks:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            raise ValueError(f"SMTP_TRUSTED_NETWORKS: {exc}") from None
    return networks


def _relay_tls(value: str) -> Literal["starttls", "tls", "none"]:
    value = value.strip().lower() or "starttls"
    if value not in ("starttls", "tls", "none"):
        raise ValueError(f"SMTP_RELAY_TLS must be starttls, tls or none, not {value!r}")
    return value  # type: ignore[return-value]


def _relay_port(tls: str) -> int:
    """The relay's usual port for its TLS mode: 465 for implicit TLS, else submission (587)."""
    return 465 if tls.strip().lower() == "tls" else 587


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
        if tenant.telegram is not None and not tenant.telegram.token:
            tenant = msgspec.structs.replace(tenant, telegram=_telegram_secrets(index, tenant.telegram, env))
        if tenant.webchat is not None and tenant.webchat.identity_secret_env and not tenant.webchat.identity_secret:
            secret = env.get(tenant.webchat.identity_secret_env, "")
            if len(secret) < 16:  # an HMAC key a visitor could guess would let anyone pose as a customer
                raise ConfigError(
                    f"`$.tenants[{index}].webchat.identity_secret_env`: environment variable "
                    f"{tenant.webchat.identity_secret_env} is not set or shorter than 16 characters"
                )
            tenant = msgspec.structs.replace(
                tenant, webchat=msgspec.structs.replace(tenant.webchat, identity_secret=secret)
            )
        tenants.append(tenant)
    return msgspec.structs.replace(deployment, tenants=tenants)


def _telegram_secrets(index: int, telegram: TelegramChannel, env: dict[str, str] | os._Environ) -> TelegramChannel:
    """A bot's token, webhook secret and deep-link key from the variables the file names."""
    values = {}
    for field, name in (
        ("token", telegram.token_env),
        ("webhook_secret", telegram.secret_env),
        ("link_key", telegram.link_key_env),
    ):
        if name is None:
            continue
        value = env.get(name, "")
        if not value:
            raise ConfigError(
                f"`$.tenants[{index}].telegram.{field.removeprefix('webhook_')}_env`: "
                f"environment variable {name} is not set"
            )
        values[field] = value
    if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", values["token"]):
        raise ConfigError(f"`$.tenants[{index}].telegram.token_env`: {telegram.token_env} is not a bot token")
    if "webhook_secret" in values and not TELEGRAM_SECRET.fullmatch(values["webhook_secret"]):
        raise ConfigError(
            f"`$.tenants[{index}].telegram.secret_env`: {telegram.secret_env} must be 1-256 "
            "characters A-Z, a-z, 0-9, _ or -"
        )
    return msgspec.structs.replace(telegram, **values)


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
        if tenant.telegram is not None:
            _check_telegram(tenant.telegram, f"{where}.telegram", queue_ids)
        if tenant.webchat is not None:
            _check_webchat(tenant.webchat, f"{where}.webchat", queue_ids)
        _check_fax(tenant, f"{where}.fax")
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


def _check_fax(tenant: Tenant, where: str) -> None:
    """Each gateway is recognisable, its patterns compile with the groups they need,
    and replies have an address to leave from."""
    import phonenumbers  # only here: the rest of the configuration needs no phone numbers

    names = [g.name for g in tenant.fax.gateways]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.gateways: gateway names must be unique")
    for index, gateway in enumerate(tenant.fax.gateways):
        gwhere = f"{where}.gateways[{index}]"
        if not gateway.from_addresses and not gateway.from_domains:
            raise ConfigError(f"{gwhere}: a gateway needs from_addresses or from_domains to recognise its mail")
        for field, groups in (
            ("number_pattern", ("number",)),
            ("pages_pattern", ("pages",)),
            ("status_pattern_ok", ()),
            ("status_pattern_failed", ()),
        ):
            pattern = getattr(gateway, field)
            if not pattern:
                if field == "number_pattern":
                    raise ConfigError(f"{gwhere}.number_pattern: required (a pattern with a group `number`)")
                continue
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"{gwhere}.{field}: not a regular expression: {exc}") from None
            for group in groups:
                if group not in compiled.groupindex:
                    raise ConfigError(f"{gwhere}.{field}: needs a named group (?P<{group}>...)")
        for n_index, network in enumerate(gateway.trusted_networks):
            try:
                ipaddress.ip_network(network)  # strict: 10.0.0.1/8 is a typo, not a network
            except ValueError as exc:
                raise ConfigError(f"{gwhere}.trusted_networks[{n_index}]: {exc}") from None
        if gateway.region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"{gwhere}.region: {gateway.region!r} is not a region phone numbers know")
        if gateway.outbound_address:
            try:
                sample = gateway.outbound_address.format(number="15551234567")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{gwhere}.outbound_address: {gateway.outbound_address!r} may use only {{number}} ({exc!r})"
                ) from None
            if "{number}" not in gateway.outbound_address or not re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.\w+", sample):
                raise ConfigError(
                    f"{gwhere}.outbound_address: {gateway.outbound_address!r} is not an address with {{number}}"
                )
    owned = [a.lower() for a in tenant.email.addresses] + ["@" + d.lower() for d in tenant.email.domains]
    address = tenant.fax.address.lower()
    if address and address not in owned and "@" + address.rpartition("@")[2] not in owned:
        raise ConfigError(
            f"{where}.address: {tenant.fax.address!r} is not one of this tenant's email addresses or domains"
        )
    if any(g.outbound_address for g in tenant.fax.gateways) and not (address or tenant.email.sender()):
        raise ConfigError(f"{where}.address: sending faxes needs an address to send from (or email.addresses)")


def _check_webchat(webchat: WebchatChannel, where: str, queue_ids: list[str]) -> None:
    for field in webchat.prechat_required:
        if field not in webchat.prechat:
            raise ConfigError(f"{where}.prechat_required: {field!r} is required but not asked (add it to prechat)")
    if "topic" in webchat.prechat and not webchat.topics:
        raise ConfigError(f"{where}.topics: the topic field needs at least one topic")
    for index, topic in enumerate(webchat.topics):
        if topic.queue not in queue_ids:
            raise ConfigError(f"{where}.topics[{index}].queue: unknown queue {topic.queue!r}")


def _check_telegram(telegram: TelegramChannel, where: str, queue_ids: list[str]) -> None:
    for field in ("token", "webhook_secret", "link_key"):
        if getattr(telegram, field):
            raise ConfigError(f"{where}.{field}: secrets never go in the file; name an environment variable")
    if telegram.mode == "webhook" and telegram.secret_env is None:
        raise ConfigError(f"{where}.secret_env: webhook mode needs a secret (Telegram sends it with every update)")
    for payload, queue in telegram.start_queues.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", payload):
            raise ConfigError(f"{where}.start_queues: {payload!r} is not a /start payload (1-64 of A-Z a-z 0-9 _ -)")
        if queue not in queue_ids:
            raise ConfigError(f"{where}.start_queues.{payload}: unknown queue {queue!r}")


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
    sender = tenant.email.from_address.lower()
    owned = [a.lower() for a in tenant.email.addresses] + ["@" + d.lower() for d in tenant.email.domains]
    if sender and sender not in owned and "@" + sender.rpartition("@")[2] not in owned:
        raise ConfigError(
            f"{where}.email.from_address: {tenant.email.from_address!r} is not one of this tenant's "
            "addresses or domains (replies to it would be refused)"
        )


def capacity_of(agent: Agent) -> dict[str, int]:
    """Per-channel capacity with defaults, and a total that defaults to the largest one."""
    capacity = dict(DEFAULT_CAPACITY)
    capacity.update({k: v for k, v in agent.capacity.items() if k != "total"})
    capacity["total"] = agent.capacity.get("total", max(capacity.values()))
    return capacity
