"""`contactrouter telegram ...`: point a tenant's bot at its webhook, and make deep links.

contactrouter telegram set-webhook --tenant acme        # Telegram calls PUBLIC_URL/telegram/acme
contactrouter telegram delete-webhook --tenant acme     # before switching the bot to polling
contactrouter telegram link --tenant acme --customer C  # a t.me link that joins C's history
"""

from __future__ import annotations

import argparse

from telegram.error import TelegramError

from channels.telegram.bots import TelegramBots, config_of, redact
from channels.telegram.deeplinks import customer_payload
from channels.telegram.polling import ALLOWED_UPDATES
from channels.telegram.webhook import PATH
from router.config import Deployment, Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.settings import Settings
from router.store import Store

NAME = "telegram"


class TelegramCommandError(ContactRouterError, ValueError):
    """Shown to the operator as one line (the CLI prints a ContactRouterError, exit status 2)."""


def register(sub: argparse._SubParsersAction) -> list[str]:
    parser = sub.add_parser(NAME, help="a tenant's Telegram bot: webhook, deep links")
    parser.add_argument("action", choices=["set-webhook", "delete-webhook", "link"])
    parser.add_argument("--customer", default="", help="for link: the customer id")
    parser.add_argument("--tenant", required=True)
    return [NAME]


async def command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    settings = Settings.from_env()  # the CLI hands commands no settings; PUBLIC_URL is read here
    tenant = deployment.tenant(a.tenant)
    try:
        config_of(tenant)
    except ValueError as exc:
        raise TelegramCommandError(f"{exc} (`[tenants.telegram] token_env`)") from None
    bots = TelegramBots(settings)
    try:
        if a.action == "set-webhook":
            print(await set_webhook(bots, tenant, settings))
        elif a.action == "delete-webhook":
            await bots.bot(tenant).delete_webhook(drop_pending_updates=False)
            print(f"webhook of {tenant.id}'s bot removed; pending updates kept for polling")
        else:
            print(await deep_link(store, bots, tenant, a.customer))
    except TelegramError as exc:
        raise TelegramCommandError(f"Telegram: {redact(str(exc), tenant)}") from None
    finally:
        await bots.close()


def webhook_url(settings: Settings, tenant: Tenant) -> str:
    base = settings.base_url
    return base + PATH.format(tenant=tenant.id)


async def set_webhook(bots: TelegramBots, tenant: Tenant, settings: Settings) -> str:
    """Have Telegram send the tenant's updates to its webhook, with its secret."""
    telegram = config_of(tenant)
    if telegram.mode != "webhook":
        raise TelegramCommandError(f"tenant {tenant.id}'s bot is in {telegram.mode} mode")
    if not settings.public_url.startswith("https://"):
        # Telegram calls only HTTPS webhooks; the address is where it reaches the web process.
        raise TelegramCommandError("set PUBLIC_URL to the https:// address Telegram reaches the web process at")
    url = webhook_url(settings, tenant)
    await bots.bot(tenant).set_webhook(url, secret_token=telegram.webhook_secret, allowed_updates=ALLOWED_UPDATES)
    return f"webhook of {tenant.id}'s bot set to {url}"


async def deep_link(store: Store, bots: TelegramBots, tenant: Tenant, customer: str) -> str:
    """A t.me link that opens the bot with a payload naming the customer, signed."""
    if not customer:
        raise TelegramCommandError("name the customer: contactrouter telegram link --tenant T --customer ID")
    if not await store.redis.exists(Keys(tenant.id).customer(customer)):
        raise TelegramCommandError(f"no customer {customer} at {tenant.id}")
    try:
        payload = customer_payload(tenant, customer)
    except ValueError as exc:
        raise TelegramCommandError(str(exc)) from None
    me = await bots.bot(tenant).get_me()
    return f"https://t.me/{me.username}?start={payload}"
