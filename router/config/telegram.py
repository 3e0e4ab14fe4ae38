"""A tenant's Telegram section: its bot, how updates arrive, /start deep links."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Literal

import msgspec

from router.config.fields import EnvName, FieldError
from router.errors import ConfigError
from router.keyring import KeyRing

# What Telegram accepts as a webhook's secret_token (1-256 of these characters).
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BOT_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
# Filled from the environment by `resolve`, never from the file.
SECRETS = ("token", "webhook_secret", "link_key")


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
    webhook_secret: str = ""  # the newest of webhook_secrets
    link_key: str = ""  # the newest of link_keys: signs new links
    # every secret and link key listed in their variables, newest first (router.keyring)
    webhook_secrets: tuple[str, ...] = ()
    link_keys: tuple[str, ...] = ()

    def webhook_ring(self) -> KeyRing:
        return KeyRing(self.webhook_secrets or ((self.webhook_secret,) if self.webhook_secret else ()))

    def link_ring(self) -> KeyRing:
        return KeyRing(self.link_keys or ((self.link_key,) if self.link_key else ()))

    def __post_init__(self) -> None:
        if self.mode == "webhook" and self.secret_env is None:
            raise FieldError("secret_env", "webhook mode needs a secret (Telegram sends it with every update)")
        for payload in self.start_queues:
            if not _PAYLOAD.fullmatch(payload):
                raise FieldError("start_queues", f"{payload!r} is not a /start payload (1-64 of A-Z a-z 0-9 _ -)")

    def queue_references(self) -> Iterator[tuple[str, str]]:
        """(field, queue id) for each deep-link payload."""
        for payload, queue in self.start_queues.items():
            yield f"start_queues.{payload}", queue


def resolve(telegram: TelegramChannel, env: Mapping[str, str], where: str) -> TelegramChannel:
    """The bot with its token, webhook secret and deep-link key read from the variables
    the file names; `where` is the section's path, for the message of a missing one."""
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
            raise ConfigError(f"`{where}.{field.removeprefix('webhook_')}_env`: environment variable {name} is not set")
        values[field] = value
    if not _BOT_TOKEN.fullmatch(values["token"]):
        raise ConfigError(f"`{where}.token_env`: {telegram.token_env} is not a bot token")
    rings = {}
    for field in ("webhook_secret", "link_key"):  # these two may list old keys during a rotation
        if field in values:
            rings[field + "s"] = KeyRing.parse(values[field]).keys
            values[field] = rings[field + "s"][0] if rings[field + "s"] else ""
    if "webhook_secrets" in rings and not all(_WEBHOOK_SECRET.fullmatch(s) for s in rings["webhook_secrets"] or [""]):
        raise ConfigError(
            f"`{where}.secret_env`: {telegram.secret_env} must be 1-256 characters A-Z, a-z, 0-9, _ or - "
            "(or several such, comma-separated, during a rotation)"
        )
    return msgspec.structs.replace(telegram, **values, **rings)
