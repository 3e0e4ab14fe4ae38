"""A tenant's Telegram bot in the deployment file, and the operator's commands for it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from channels.telegram import deeplinks
from channels.telegram.bots import TelegramBots
from channels.telegram.cli import TelegramCommandError, deep_link, set_webhook
from router.config import parse_deployment, resolve_secrets
from router.errors import ConfigError
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from tests.channels.telegram_api import BOT_USERNAME, TelegramApi
from tests.factories import deployment

TOKEN = "7000000001:AAHacmeTestToken-0123456789abcdefghi"
CUSTOMER = "01JD0000000000000000000000"
ENV = {"ACME_TELEGRAM_TOKEN": TOKEN, "ACME_TELEGRAM_SECRET": "s3cret_-token", "ACME_TELEGRAM_LINK_KEY": "k" * 32}

BOT = """
[[tenants]]
id = "acme"
[tenants.telegram]
token_env = "ACME_TELEGRAM_TOKEN"
secret_env = "ACME_TELEGRAM_SECRET"
link_key_env = "ACME_TELEGRAM_LINK_KEY"
start_queues = { pay = "billing" }
[[tenants.queues]]
id = "support"
[[tenants.queues]]
id = "billing"
"""


def test_the_token_secret_and_link_key_come_from_the_environment_variables_the_file_names():
    telegram = resolve_secrets(deployment(BOT), ENV).tenants[0].telegram
    assert (telegram.token, telegram.webhook_secret, telegram.link_key) == (TOKEN, "s3cret_-token", "k" * 32)
    assert (telegram.mode, telegram.start_queues) == ("webhook", {"pay": "billing"})


@pytest.mark.parametrize(
    ("missing", "field"),
    [
        ("ACME_TELEGRAM_TOKEN", "token_env"),
        ("ACME_TELEGRAM_SECRET", "secret_env"),
        ("ACME_TELEGRAM_LINK_KEY", "link_key_env"),
    ],
)
def test_an_unset_variable_stops_start_up_naming_the_field(missing, field):
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(
        ConfigError, match=rf"tenants\[0\]\.telegram\.{field}`: environment variable {missing} is not set"
    ):
        resolve_secrets(deployment(BOT), env)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ACME_TELEGRAM_TOKEN", "not-a-token", "is not a bot token"),
        ("ACME_TELEGRAM_SECRET", "spaces are not allowed", "must be 1-256 characters"),
    ],
)
def test_a_malformed_token_or_secret_is_refused(variable, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_secrets(deployment(BOT), {**ENV, variable: value})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('secret_env = "ACME_TELEGRAM_SECRET"', ""), r"telegram\.secret_env`: webhook mode needs a secret"),
        (('pay = "billing"', 'pay = "nowhere"'), r"telegram\.start_queues\.pay`: unknown queue 'nowhere'"),
        (('pay = "billing"', '"pay me" = "billing"'), r"'pay me' is not a /start payload"),
        (
            ('token_env = "ACME_TELEGRAM_TOKEN"', f'token_env = "X"\ntoken = "{TOKEN}"'),
            r"telegram\.token`: secrets never",
        ),
        (('token_env = "ACME_TELEGRAM_TOKEN"', 'token_env = "acme-token"'), r"token_env"),
        (("start_queues", 'mode = "hook"\nstart_queues'), r"mode"),
    ],
)
def test_a_bad_telegram_section_stops_start_up_naming_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_deployment(BOT.replace(*change), "deploy.toml")


def test_a_polling_bot_needs_no_webhook_secret():
    text = BOT.replace('secret_env = "ACME_TELEGRAM_SECRET"', 'mode = "polling"')
    telegram = resolve_secrets(deployment(text), ENV).tenants[0].telegram
    assert (telegram.mode, telegram.webhook_secret) == ("polling", "")


def test_customer_links_are_signed_per_tenant_and_fit_telegrams_payload_limit():
    tenant = resolve_secrets(deployment(BOT), ENV).tenants[0]
    customer = "01JD0000000000000000000000"
    payload = deeplinks.customer_payload(tenant, customer)
    assert len(payload) <= 64 and deeplinks.PAYLOAD.fullmatch(payload)
    assert deeplinks.resolve(tenant, payload) == deeplinks.Start(payload, customer=customer)
    other = resolve_secrets(deployment(BOT.replace('"acme"', '"globex"')), ENV).tenants[0]
    assert deeplinks.resolve(other, payload).forged  # the same key, another tenant: not valid there
    assert deeplinks.resolve(tenant, "pay") == deeplinks.Start("pay", queue="billing")
    assert deeplinks.parse_start("/start@acme_help_bot pay") == "pay"
    assert deeplinks.parse_start("/start") == ""
    assert deeplinks.parse_start("/starting") is None and deeplinks.parse_start("hello") is None


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.app.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


@pytest.mark.e2e
async def test_set_webhook_points_the_bot_at_the_public_url_with_the_secret(redis_url, tmp_path: Path):
    # the operator's command end to end, in its own process, once
    config = tmp_path / "deploy.toml"
    config.write_text(BOT, "utf-8")
    async with TelegramApi(TOKEN) as api:
        env = {**ENV, "REDIS_URL": redis_url, "CONTACTROUTER_CONFIG": str(config), "TELEGRAM_API_BASE": api.url}
        code, out, err = await cli(
            {**env, "PUBLIC_URL": "https://router.example.com"}, "telegram", "set-webhook", "--tenant", "acme"
        )
        assert code == 0, err
        assert out.strip() == "webhook of acme's bot set to https://router.example.com/telegram/acme"
        assert api.webhook["url"] == "https://router.example.com/telegram/acme"
        assert api.webhook["secret_token"] == "s3cret_-token"
        assert TOKEN not in out + err


async def test_a_webhook_needs_the_https_address_telegram_reaches_the_web_process_at():
    tenant = resolve_secrets(deployment(BOT), ENV).tenants[0]
    async with TelegramApi(TOKEN) as api:
        bots = TelegramBots(Settings(telegram_api_base=api.url))
        try:
            with pytest.raises(TelegramCommandError, match="set PUBLIC_URL to the https:// address"):
                await set_webhook(bots, tenant, Settings(public_url="http://localhost:8080"))
        finally:
            await bots.close()
        assert api.calls == []


async def test_a_deep_link_is_made_only_for_a_customer_of_the_tenant():
    tenant = resolve_secrets(deployment(BOT), ENV).tenants[0]
    store = connect(Settings())
    async with TelegramApi(TOKEN) as api:
        bots = TelegramBots(Settings(telegram_api_base=api.url))
        try:
            with pytest.raises(TelegramCommandError, match=f"no customer {CUSTOMER} at acme"):
                await deep_link(store, bots, tenant, CUSTOMER)
            await store.redis.hset(Keys("acme").customer(CUSTOMER), "id", CUSTOMER)
            link = await deep_link(store, bots, tenant, CUSTOMER)
        finally:
            await bots.close()
    assert link == f"https://t.me/{BOT_USERNAME}?start={deeplinks.customer_payload(tenant, CUSTOMER)}"
