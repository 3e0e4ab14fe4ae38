"""Process settings: the environment, read once at start-up into a typed `Settings`.

Every variable parses one way: a flag accepts 1/true/yes/on or 0/false/no/off (any
case), a number is checked against its least value, and a blank or unset variable
means the field's default, written once on the Struct below. A value that does not
parse stops start-up (and `contactrouter config check`) with a ConfigError naming
the variable.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import msgspec

from router.errors import ConfigError

RelayTls = Literal["starttls", "tls", "none"]


class Settings(msgspec.Struct, kw_only=True):
    """Process settings from the environment."""

    redis_url: str | None = None  # None: the embedded store; for a cluster, several seed nodes split by commas
    # PostgreSQL, the system of record (router/records); None: no archive, Redis keeps everything
    database_url: str | None = None
    # a closed conversation stays in Redis this long after its close, then (once archived) only in PostgreSQL
    hot_days: float = 7.0
    archive_pool: int = 4  # connections each process keeps to PostgreSQL
    cluster: bool = False
    # how long a command keeps retrying a lost connection or a cluster failing over before its
    # error reaches the caller (a webhook then answers 503); above Redis Cluster's node timeout
    # (cluster-node-timeout, 15 s by default) plus the replica's election, so a failover is waited out
    redis_retry_s: float = 20.0
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
    # several web processes listen on one PORT (SO_REUSEPORT; the kernel spreads the connections)
    web_reuse_port: bool = False
    log_level: str = "INFO"
    access_log: bool = True  # the web process logs each request (method, path, status, time)
    public_url: str = ""  # the URL providers call us at (behind a proxy); default http://host:port
    twilio_signatures: bool = True  # off only for local development: every webhook is then trusted
    twilio_api_base: str = ""  # e.g. a local recording server in tests; default: Twilio's own API
    # signs and checks the webhooks of tenants without a Twilio account (the offline sandbox,
    # `contactrouter simulate sms`); empty: such webhooks are refused
    twilio_sandbox_token: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_max_bytes: int = 25 * 1024 * 1024  # a bigger message is refused (552)
    # the name we give in SMTP: the smtp process's greeting and EHLO answer, and the EHLO we
    # send to the relay (many relays and spam filters judge it); empty: this machine's FQDN
    smtp_hostname: str = ""
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
    smtp_relay_port: int = 587  # 465 when SMTP_RELAY_TLS is tls (implicit TLS), unless set
    smtp_relay_user: str = ""
    smtp_relay_password: str = ""  # from the environment only; never logged
    smtp_relay_tls: RelayTls = "starttls"
    smtp_relay_ca_file: str = ""  # trust this CA bundle for the relay (a private CA); default: the system's
    telegram_api_base: str = ""  # e.g. a local Bot API server in tests; default: api.telegram.org
    # signs web chat visitors' tokens; empty: the web process keeps a generated one in the store
    webchat_secret: str = ""
    # reverse proxies in front of the web process that append to X-Forwarded-For: the client's
    # address (for web chat flood limits and inbox login throttling) is that many entries from
    # its end; 0: the peer address, and X-Forwarded-For is ignored (a client could write anything)
    trusted_proxy_hops: int = 0
    # failed inbox logins (and second-factor codes) one client address may make across all
    # names in 15 minutes before it is throttled (429); raise it for a centre whose staff
    # all log in through one address
    login_client_failures: int = 30
    metrics_port: int = 0  # roles other than web serve /metrics here; 0: none (web serves it on PORT)
    # the token that reads /metrics and /readyz's detail on the web port (a secret: never logged);
    # empty: the web port serves no metrics and only readiness's status
    ops_token: str = ""
    templates_dir: str = ""  # a deployment's own templates/ folder; empty: the one installed with the package

    def __post_init__(self) -> None:
        """Settings that only work together, checked however Settings are made: `config check`
        then refuses what the smtp process would (mail must not silently arrive in the clear)."""
        if bool(self.smtp_tls_cert) != bool(self.smtp_tls_key):
            raise ConfigError("environment: SMTP_TLS_CERT and SMTP_TLS_KEY go together: set both or neither")
        if self.smtp_require_starttls and not self.smtp_tls_cert:
            raise ConfigError("environment: SMTP_REQUIRE_STARTTLS needs SMTP_TLS_CERT and SMTP_TLS_KEY")
        if self.redis_url and "," in self.redis_url and not self.cluster:
            raise ConfigError("environment: REDIS_URL: several nodes are for a Redis Cluster: set REDIS_CLUSTER=true")
        if self.templates_dir and not os.path.isdir(self.templates_dir):
            raise ConfigError(f"environment: TEMPLATES_DIR: {self.templates_dir!r} is not a folder")

    @property
    def base_url(self) -> str:
        """Where providers and browsers reach the web process: PUBLIC_URL, else host and port."""
        return self.public_url or f"http://{self.host}:{self.port}"

    def client_address(self, peer: str | None, forwarded_for: list[str]) -> str:
        """The client's address: behind TRUSTED_PROXY_HOPS proxies, the entry the outermost one
        appended to X-Forwarded-For (earlier entries are whatever the client claimed); else
        the peer's. `forwarded_for` is every X-Forwarded-For header, in order."""
        if self.trusted_proxy_hops > 0:
            chain = [part.strip() for part in ",".join(forwarded_for).split(",")]
            chain = [part for part in chain if part]
            if len(chain) >= self.trusted_proxy_hops:
                return chain[-self.trusted_proxy_hops]
        return peer or "unknown"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment (default: os.environ) gives; ConfigError names a bad variable."""
        read = _Reader(os.environ if env is None else env)
        read.text("redis_url", "REDIS_URL")
        read.flag("cluster", "REDIS_CLUSTER")
        read.number("redis_retry_s", "REDIS_RETRY_S")
        read.text("database_url", "DATABASE_URL")
        read.number("hot_days", "CONTACTROUTER_HOT_DAYS")
        read.number("archive_pool", "CONTACTROUTER_ARCHIVE_POOL", least=1)
        read.text("config_path", "CONTACTROUTER_CONFIG")
        read.text("templates_dir", "TEMPLATES_DIR")
        read.text("ops_token", "OPS_TOKEN")
        read.text("consumer", "CONTACTROUTER_CONSUMER")
        read.number("claim_idle_ms", "CONTACTROUTER_CLAIM_IDLE_MS", least=1)
        read.number("max_deliveries", "CONTACTROUTER_MAX_DELIVERIES", least=1)
        read.number("send_lease_ms", "CONTACTROUTER_SEND_LEASE_MS", least=1)
        read.number("dispatch_concurrency", "CONTACTROUTER_DISPATCH_CONCURRENCY", least=1)
        read.number("batch", "CONTACTROUTER_BATCH", least=1)
        read.number("block_ms", "CONTACTROUTER_BLOCK_MS", least=1)  # 0: XREADGROUP would block for ever
        read.number("stream_keep_hours", "CONTACTROUTER_STREAM_KEEP_HOURS")
        read.text("host", "HOST")
        read.number("port", "PORT")
        read.flag("web_reuse_port", "WEB_REUSE_PORT")
        read.choice("log_level", "LOG_LEVEL", logging.getLevelNamesMapping(), str.upper)
        read.flag("access_log", "ACCESS_LOG")
        read.text("public_url", "PUBLIC_URL", _without_slash)
        read.flag("twilio_signatures", "TWILIO_SIGNATURES")
        read.text("twilio_api_base", "TWILIO_API_BASE", _without_slash)
        read.text("twilio_sandbox_token", "TWILIO_SANDBOX_TOKEN")
        read.text("smtp_host", "SMTP_HOST")
        read.number("smtp_port", "SMTP_PORT")
        read.number("smtp_max_bytes", "SMTP_MAX_BYTES", least=1)
        read.text("smtp_hostname", "SMTP_HOSTNAME", _hostname)
        read.text("attachment_dir", "ATTACHMENT_DIR")
        read.number("attachment_max_bytes", "ATTACHMENT_MAX_BYTES", least=1)
        read.text("smtp_tls_cert", "SMTP_TLS_CERT")
        read.text("smtp_tls_key", "SMTP_TLS_KEY")
        read.flag("smtp_require_starttls", "SMTP_REQUIRE_STARTTLS")
        read.networks("smtp_trusted_networks", "SMTP_TRUSTED_NETWORKS")
        read.text("smtp_authserv_id", "SMTP_AUTHSERV_ID", lambda v: v.strip().lower())
        read.text("smtp_relay_host", "SMTP_RELAY_HOST")
        read.choice("smtp_relay_tls", "SMTP_RELAY_TLS", typing.get_args(RelayTls), str.lower)
        if not read.number("smtp_relay_port", "SMTP_RELAY_PORT") and read.values.get("smtp_relay_tls") == "tls":
            read.values["smtp_relay_port"] = 465  # the port of implicit TLS; submission (587) otherwise
        read.text("smtp_relay_user", "SMTP_RELAY_USER")
        read.text("smtp_relay_password", "SMTP_RELAY_PASSWORD")
        read.text("smtp_relay_ca_file", "SMTP_RELAY_CA_FILE")
        read.text("telegram_api_base", "TELEGRAM_API_BASE", _without_slash)
        read.text("webchat_secret", "WEBCHAT_SECRET")
        read.number("trusted_proxy_hops", "TRUSTED_PROXY_HOPS")
        read.number("login_client_failures", "LOGIN_CLIENT_FAILURES", least=1)
        default_port = next(f.default for f in msgspec.structs.fields(cls) if f.name == "port")
        read.port_or_offset("metrics_port", "METRICS_PORT", base=read.values.get("port", default_port))
        return cls(**read.values)


# A field's type decides how its number parses (an int field refuses "1.5").
_TYPES = {field.name: field.type for field in msgspec.structs.fields(Settings)}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class _Reader:
    """Reads variables into Settings fields. A blank or unset variable adds nothing, so
    the field keeps the default written on Settings; a value that does not parse is a
    ConfigError naming the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.values: dict[str, Any] = {}

    def _given(self, name: str) -> str:
        """The variable's value as set (a password may end in a space); "" when blank."""
        value = self.env.get(name, "")
        return value if value.strip() else ""

    def _refuse(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"environment: {name}: {problem}")

    def text(self, field: str, name: str, normalise: Callable[[str], str] = str) -> bool:
        if value := self._given(name):
            self.values[field] = normalise(value)
        return bool(value)

    def flag(self, field: str, name: str) -> bool:
        if not (value := self._given(name)):
            return False
        if (word := value.strip().lower()) not in _TRUE | _FALSE:
            raise self._refuse(name, f"{value!r} is neither on (1, true, yes, on) nor off (0, false, no, off)")
        self.values[field] = word in _TRUE
        return True

    def number(self, field: str, name: str, least: int = 0) -> bool:
        if not (value := self._given(name)):
            return False
        try:
            number = _TYPES[field](value.strip())
        except ValueError:
            raise self._refuse(name, f"{value!r} is not a number") from None
        if number < least:
            raise self._refuse(name, f"must be at least {least}, not {value!r}")
        self.values[field] = number
        return True

    def port_or_offset(self, field: str, name: str, base: int) -> bool:
        """A port, or `+N`: N above `base` (PORT). honcho gives every process a PORT of its own
        (5000, 5100, 5200, 5201, ...), so `METRICS_PORT=+1000` gives each its own metrics port."""
        value = self._given(name).strip()
        if not value.startswith("+"):
            return self.number(field, name)
        try:
            offset = int(value[1:])
        except ValueError:
            raise self._refuse(name, f"{value!r} is neither a port nor +OFFSET (from PORT)") from None
        if not 0 < base + offset < 65536:
            raise self._refuse(name, f"PORT {base} {value} is no port")
        self.values[field] = base + offset
        return True

    def choice(self, field: str, name: str, choices: Collection[str], normalise: Callable[[str], str]) -> bool:
        if not (value := self._given(name)):
            return False
        if (normalised := normalise(value.strip())) not in choices:
            raise self._refuse(name, f"must be one of {', '.join(choices)}, not {value!r}")
        self.values[field] = normalised
        return True

    def networks(self, field: str, name: str) -> bool:
        """Comma-separated CIDRs, each checked. Set but blank trusts no network (unset: the default)."""
        if name not in self.env:
            return False
        networks = [n.strip() for n in self.env[name].split(",") if n.strip()]
        for network in networks:
            try:
                ipaddress.ip_network(network)
            except ValueError as exc:
                raise self._refuse(name, str(exc)) from None
        self.values[field] = networks
        return True


def _without_slash(url: str) -> str:
    return url.strip().rstrip("/")


_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def _hostname(name: str) -> str:
    """A domain name for EHLO (RFC 5321 4.1.1.1): letters, digits, hyphens and dots only,
    so that no header or command can be smuggled through it."""
    name = name.strip().lower().rstrip(".")
    if not _HOSTNAME.fullmatch(name):
        raise ConfigError(f"environment: SMTP_HOSTNAME: {name!r} is not a host name (such as mail.example.com)")
    return name
