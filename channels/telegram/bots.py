"""One python-telegram-bot `Bot` per tenant, made on first use.

The client speaks the Bot API; this module only decides where it goes (Telegram,
or another base URL such as a local Bot API server in tests) and keeps each
request well inside the dispatcher's send lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings

from telegram import Bot
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from router.config import Tenant
from router.config.telegram import TelegramChannel
from router.settings import Settings

# A Bot API URL holds the bot's token (https://api.telegram.org/bot<token>/sendMessage),
# and httpx logs every request's URL at INFO, python-telegram-bot its base URL at DEBUG.
TOKEN_IN_URL = re.compile(r"(?<=/bot)[0-9]+:[A-Za-z0-9_-]+")


class RedactTokens(logging.Filter):
    """Takes bot tokens out of the log records of the libraries that put URLs in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = TOKEN_IN_URL.sub("<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


for _name in ("httpx", "telegram", "telegram.Bot", "telegram.BaseRequest", "telegram.HTTPXRequest"):
    logging.getLogger(_name).addFilter(RedactTokens())

TELEGRAM_API = "https://api.telegram.org"
# Per phase of a request (httpx times connect, write and read apart): a send of several
# requests must still end long before workers.dispatch.SEND_LEASE_MS (120 s).
TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0


def bot_id(token: str) -> str:
    """The bot's numeric id: the part of its token before the colon (not a secret)."""
    return token.partition(":")[0]


class TelegramBots:
    """The bot of each tenant that has one. Open and close it inside the event loop that uses it."""

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        self.api_base = (settings.telegram_api_base or TELEGRAM_API).rstrip("/")
        self.timeout_s = timeout_s
        self._bots: dict[str, Bot] = {}

    def bot(self, tenant: Tenant) -> Bot:
        """The tenant's bot; the tenant must have one configured."""
        telegram = config_of(tenant)
        bot = self._bots.get(tenant.id)
        if bot is None:
            request = HTTPXRequest(
                connection_pool_size=8,
                connect_timeout=min(CONNECT_TIMEOUT_S, self.timeout_s),
                read_timeout=self.timeout_s,
                write_timeout=self.timeout_s,
                pool_timeout=min(CONNECT_TIMEOUT_S, self.timeout_s),
            )
            bot = Bot(
                telegram.token,
                base_url=f"{self.api_base}/bot",
                base_file_url=f"{self.api_base}/file/bot",
                request=request,
                # long polling holds its connection open; it gets one of its own
                get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=self.timeout_s),
            )
            self._bots[tenant.id] = bot
        return bot

    async def ready(self, tenant: Tenant) -> Bot:
        """The tenant's bot, initialised (one getMe, which also checks the token)."""
        bot = self.bot(tenant)
        await bot.initialize()
        return bot

    async def close(self) -> None:
        bots, self._bots = self._bots, {}
        for bot in bots.values():
            await bot.shutdown()


def config_of(tenant: Tenant) -> TelegramChannel:
    if tenant.telegram is None or not tenant.telegram.token:
        raise ValueError(f"tenant {tenant.id} has no Telegram bot")
    return tenant.telegram


def redact(text: str, tenant: Tenant) -> str:
    """Text fit for a log: a file URL or an error message may carry the bot's token."""
    token = tenant.telegram.token if tenant.telegram is not None else ""
    return text.replace(token, "<token>") if token else text


def period_s(obj: object, attribute: str) -> float:
    """A time period of python-telegram-bot's in seconds. Version 22 returns an int or a
    timedelta by the PTB_TIMEDELTA environment variable, warning for the int."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = getattr(obj, attribute)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value or 0)
