"""Twilio webhook authentication: the URL Twilio signed, the token, the signed form."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from twilio.request_validator import RequestValidator

from channels._twilio_auth import MAX_FORM_BYTES, public_url, tokens_for, verified_form
from router.config import resolve_secrets
from router.keyring import KeyRing
from router.settings import Settings
from tests.factories import deployment

TOKEN = "12345678901234567890123456789012"
TENANTS = """
[[tenants]]
id = "acme"
twilio = { account_sid = "AC0123456789abcdef0123456789abcdef", auth_token_env = "ACME_TWILIO_TOKEN" }
[[tenants.queues]]
id = "support"

[[tenants]]
id = "globex"
[[tenants.queues]]
id = "sales"
"""


def tenants(token: str = TOKEN):
    return resolve_secrets(deployment(TENANTS), {"ACME_TWILIO_TOKEN": token}).tenants


def test_public_url_is_the_requests_own_without_a_public_url():
    request = make_mocked_request("POST", "/twilio/sms?x=1", headers={"Host": "127.0.0.1:8080"})
    assert public_url(request, Settings()) == "http://127.0.0.1:8080/twilio/sms?x=1"


def test_public_url_behind_a_proxy_is_the_public_url_with_path_and_query():
    request = make_mocked_request("POST", "/twilio/sms?x=%2F1", headers={"Host": "10.0.0.7:8080"})
    settings = Settings(public_url="https://router.example.com")
    assert public_url(request, settings) == "https://router.example.com/twilio/sms?x=%2F1"


def test_tokens_for_a_tenant_are_its_auth_tokens_else_the_sandbox_token_else_none():
    acme, globex = tenants()
    assert tokens_for(acme, Settings(twilio_sandbox_token="sandbox")).keys == (TOKEN,)
    assert tokens_for(globex, Settings(twilio_sandbox_token="sandbox")).keys == ("sandbox",)
    assert not tokens_for(globex, Settings())


def test_during_a_rotation_the_new_token_calls_twilio_and_both_verify():
    new = "f" * 32
    acme, _globex = tenants(f" {new} , {TOKEN} ")
    assert acme.twilio.auth_token == new  # what the REST client authenticates with
    assert tokens_for(acme, Settings()).keys == (new, TOKEN)


def test_sandbox_token_comes_from_the_environment():
    assert Settings.from_env({"TWILIO_SANDBOX_TOKEN": "s3cret"}).twilio_sandbox_token == "s3cret"
    assert Settings.from_env({}).twilio_sandbox_token == ""


@pytest.fixture
async def hook():
    """A web app whose one route answers with the verified form; per test, its settings."""

    async def make(settings: Settings) -> TestClient:
        async def handler(request: web.Request) -> web.Response:
            form = await verified_form(request, KeyRing((TOKEN, "o" * 32)), settings)
            return web.json_response(dict(form))

        app = web.Application()
        app.router.add_post("/hook", handler)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    clients: list[TestClient] = []
    yield make
    for client in clients:
        await client.close()


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


PARAMS = {"From": "+15551230000", "Body": "hi"}


async def test_a_signed_form_is_returned(hook):
    client = await hook(Settings())
    url = str(client.make_url("/hook"))
    response = await client.post("/hook", data=PARAMS, headers=sign(url, PARAMS))
    assert response.status == 200
    assert await response.json() == PARAMS


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "missing X-Twilio-Signature"),
        ({"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, "invalid X-Twilio-Signature"),
    ],
)
async def test_a_missing_or_wrong_signature_is_forbidden(hook, headers, reason):
    client = await hook(Settings())
    response = await client.post("/hook", data=PARAMS, headers=headers)
    assert response.status == 403
    assert reason in await response.text()


async def test_a_signature_by_the_old_token_during_a_rotation_is_accepted(hook):
    client = await hook(Settings())
    url = str(client.make_url("/hook"))
    response = await client.post("/hook", data=PARAMS, headers=sign(url, PARAMS, token="o" * 32))
    assert response.status == 200


async def test_a_signature_by_another_token_is_forbidden(hook):
    client = await hook(Settings())
    url = str(client.make_url("/hook"))
    response = await client.post("/hook", data=PARAMS, headers=sign(url, PARAMS, token="0" * 32))
    assert response.status == 403


async def test_behind_a_proxy_the_public_url_is_what_must_be_signed(hook):
    client = await hook(Settings(public_url="https://router.example.com"))
    local = str(client.make_url("/hook"))
    assert (await client.post("/hook", data=PARAMS, headers=sign(local, PARAMS))).status == 403
    public = "https://router.example.com/hook"
    assert (await client.post("/hook", data=PARAMS, headers=sign(public, PARAMS))).status == 200
    # Twilio sometimes signs with the default port spelled out; both forms are accepted
    with_port = "https://router.example.com:443/hook"
    assert (await client.post("/hook", data=PARAMS, headers=sign(with_port, PARAMS))).status == 200


async def test_checking_is_skipped_only_when_settings_turn_it_off(hook):
    on = await hook(Settings())
    assert (await on.post("/hook", data=PARAMS)).status == 403
    off = await hook(Settings(twilio_signatures=False))
    assert (await off.post("/hook", data=PARAMS)).status == 200


async def test_an_oversized_form_is_refused_before_it_is_read(hook):
    client = await hook(Settings())
    big = {"Body": "x" * (MAX_FORM_BYTES + 1)}
    url = str(client.make_url("/hook"))
    assert (await client.post("/hook", data=big, headers=sign(url, big))).status == 413


async def test_an_oversized_chunked_form_is_refused(hook):
    client = await hook(Settings())

    async def chunks():
        for _ in range(MAX_FORM_BYTES // 1024 + 2):
            yield b"Body=" + b"x" * 1019

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await client.post("/hook", data=chunks(), headers=headers)).status == 413


async def test_only_an_urlencoded_form_is_read(hook):
    client = await hook(Settings(twilio_signatures=False))
    response = await client.post("/hook", json=PARAMS)
    assert response.status == 415
    bad = await client.post("/hook", data=b"Body=\xff", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status == 400 and "malformed form" in await bad.text()
