"""The widget script, the demo page, the sender and the configuration of a tenant's chat."""

from __future__ import annotations

import json
import re

import pytest

from channels.sandbox import outbox
from channels.webchat import identity, transcript
from channels.webchat.outbound import WebchatSender
from router.app import cli
from router.config import resolve_secrets
from router.errors import ConfigError
from tests.channels.test_webchat_socket import CHAT, CUSTOMER_SECRET, chat_server, chat_world
from tests.factories import deployment, outbound, world


def widget_config(script: str) -> dict:
    return json.loads(re.search(r"var CONFIG = (.*);\n", script).group(1))


async def test_the_widget_carries_the_tenants_look_and_nothing_in_it_can_end_the_script() -> None:
    w = await chat_world(
        'title = "Acme </script><script>alert(1)</script>"\ncolor = "#112233"\ngreeting = "Hello & welcome"'
    )
    async with chat_server(w) as client:
        response = await client.get("/webchat/acme/widget.js")
        script = await response.text()
        assert response.content_type == "application/javascript"
        raw = re.search(r"var CONFIG = (.*);\n", script).group(1)
        assert "<" not in raw and "&" not in raw  # tojson escapes them: no text can end or break the script
        config = widget_config(script)
        assert (config["title"], config["color"], config["greeting"]) == (
            "Acme </script><script>alert(1)</script>",
            "#112233",
            "Hello & welcome",
        )
        assert config["allowedOrigins"] == ["https://shop.acme.example"]
        assert (await client.get("/webchat/acme/demo")).status == 404  # the demo page is off unless enabled
        assert (await client.get("/webchat/nobody/widget.js")).status == 404


def widget_texts(script: str) -> dict:
    return json.loads(re.search(r"var TEXTS = (.*);\n", script).group(1))


async def test_the_widget_speaks_the_visitors_browser_language_but_keeps_the_tenants_own_words() -> None:
    w = await chat_world('greeting = "Welcome to Acme"')
    async with chat_server(w) as client:
        response = await client.get("/webchat/acme/widget.js", headers={"Accept-Language": "zh-HK,en;q=0.5"})
        script = await response.text()
        assert response.headers["Vary"] == "Accept-Language" and response.headers["Content-Language"] == "zh-Hant"
        texts = widget_texts(script)
        assert texts["Start chatting"] == "開始聊天" and texts["Send"] == "傳送"
        assert "Log in" not in texts  # the widget's own words only, not the desk's
        config = widget_config(script)
        assert config["greeting"] == "Welcome to Acme"  # the tenant's words win
        assert config["offlineMessage"].startswith("我們現在不在線上")  # ours, in the visitor's language

        simplified = await (await client.get("/webchat/acme/widget.js", headers={"Accept-Language": "zh-CN"})).text()
        assert widget_texts(simplified)["Start chatting"] == "开始聊天"
        english = await (await client.get("/webchat/acme/widget.js", headers={"Accept-Language": "de"})).text()
        assert widget_texts(english) == {} and widget_config(english)["offlineMessage"].startswith("We are offline")
        assert 'gettext("Start chatting")' in english  # the script looks its words up; English is the msgid


async def test_the_demo_page_escapes_the_tenants_name() -> None:
    w = await chat_world('demo_page = true\ntitle = "<b>Acme</b>"')
    async with chat_server(w) as client:
        page = await (await client.get("/webchat/acme/demo")).text()
    assert "<b>Acme</b>" not in page and "&lt;b&gt;Acme&lt;/b&gt;" in page
    assert '<script src="/webchat/acme/widget.js" async></script>' in page


async def test_a_reply_is_kept_once_however_often_it_is_sent_and_reconciles_as_sent() -> None:
    w = await chat_world()
    sender = WebchatSender(w.store, w.deployment)
    message = outbound(channel="webchat", to="v-" + "a" * 32, body="Hello <there>", agent="amy")
    assert (await sender.reconcile(message))[0] == "not_sent"
    first = await sender.send(message)
    assert await sender.send(message) == first
    assert await sender.reconcile(message) == ("sent", first)
    [item] = await transcript.history(w.store, "acme", "v-" + "a" * 32)
    assert (item.kind, item.text, item.agent) == ("out", "Hello <there>", "Amy Pond")


async def test_a_tenant_without_a_chat_gets_its_chat_replies_in_the_sandbox_outbox() -> None:
    w = await world()
    message = outbound(channel="webchat", to="v-" + "b" * 32)
    await WebchatSender(w.store, w.deployment).send(message)
    assert [m.id for _e, _p, m in await outbox(w.store, "acme")] == [message.id]


def test_the_identity_secret_comes_from_the_environment_and_must_be_long() -> None:
    config = deployment(CHAT.replace("{extra}", "").replace("{limits}", ""))
    with pytest.raises(ConfigError, match="ACME_CHAT_SECRET is not set"):
        resolve_secrets(config, {})
    with pytest.raises(ConfigError, match="shorter than 16"):
        resolve_secrets(config, {"ACME_CHAT_SECRET": "short"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('topics = [{ label = "Gas", queue = "nowhere" }]', "unknown queue 'nowhere'"),
        ('prechat = ["name"]\nprechat_required = ["email"]', "'email' is required but not asked"),
        ('prechat = ["topic"]', "needs at least one topic"),
        ('allowed_origins = ["https://shop.example/path"]', "allowed_origins"),
        ('color = "red; background: url(x)"', "color"),
    ],
)
def test_a_chat_configuration_mistake_names_its_field(extra: str, message: str) -> None:
    text = CHAT.replace('allowed_origins = ["https://shop.acme.example"]\n', "").replace("{limits}", "")
    with pytest.raises(ConfigError, match=re.escape(message)):
        deployment(text.replace("{extra}", extra))


def test_the_cli_signs_a_customer_as_the_tenants_site_would(
    write_config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(CHAT.replace("{extra}", "").replace("{limits}", ""))
    monkeypatch.setenv("ACME_CHAT_SECRET", CUSTOMER_SECRET)
    assert cli.main(["--config", str(path), "webchat", "sign", "--tenant", "acme", "--email", "jane@example.com"]) == 0
    signature = identity.customer_signature(CUSTOMER_SECRET, "email", "jane@example.com")
    assert capsys.readouterr().out == f'data-customer-email="jane@example.com" data-customer-signature="{signature}"\n'
    assert cli.main(["--config", str(path), "webchat", "sign", "--tenant", "globex", "--id", "42"]) == 2
    assert "globex has no [tenants.webchat] identity_secret_env" in capsys.readouterr().err
