"""A store that is away (restarting, failing over, out of connections) makes the web
process answer 503 with Retry-After, so Twilio and browsers try again, never 500; a store
that answers with an error is still a 500. (The client waits out REDIS_RETRY_S
first; here it is short.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from ops.redis_server import RedisServer, RedisServerMissing
from router.app.inbox import sessions
from router.app.web import RETRY_AFTER_S, application
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from tests.factories import world

TOKEN = "sandbox-token"
NUMBER = "+15550100001"
TENANT = f"""
[[tenants]]
id = "acme"
sms = {{ numbers = ["{NUMBER}"] }}

[[tenants.queues]]
id = "support"
"""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of the test's own (the test stops it), with AOF: a restart keeps the data."""
    try:
        server = RedisServer(appendonly=True, appendfsync="always")
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[TestClient]:
    # A short retry budget: the test's outage outlasts it at once.
    settings = Settings(redis_url=server.url, redis_retry_s=0.2, twilio_sandbox_token=TOKEN)
    store = connect(settings)
    w = await world(TENANT, store=store)
    try:
        async with TestClient(TestServer(application(store, w.deployment, settings))) as client:
            yield client
    finally:
        await store.close()


def signed_sms(client: TestClient, body: str) -> tuple[dict, dict]:
    sid = f"SM{uuid.uuid4().hex}"
    params = {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15551230000", "To": NUMBER, "Body": body}
    signature = RequestValidator(TOKEN).compute_signature(str(client.make_url("/twilio/sms")), params)
    return params, {"X-Twilio-Signature": signature}


@pytest.mark.integration
async def test_a_webhook_the_store_cannot_take_is_503_with_retry_after_and_twilios_retry_lands(server, client):
    params, headers = signed_sms(client, "is anyone there?")
    server.stop()

    refused = await client.post("/twilio/sms", data=params, headers=headers)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_S)

    server.start()
    retried = await client.post("/twilio/sms", data=params, headers=headers)
    assert retried.status == 200
    probe = connect(Settings(redis_url=server.url))
    try:
        assert await probe.redis.xlen(Keys("acme").inbound) == 1
    finally:
        await probe.close()


@pytest.mark.integration
async def test_an_inbox_page_is_503_while_the_store_is_away(server, client):
    server.stop()
    page = await client.get("/inbox/", cookies={sessions.COOKIE: "a-session"}, allow_redirects=False)
    assert page.status == 503
    assert page.headers["Retry-After"] == str(RETRY_AFTER_S)


@pytest.mark.integration
async def test_a_store_that_answers_with_an_error_is_still_a_500(server, client):
    # A bug, not an outage: the tenant's inbound stream is the wrong type, so ingest fails.
    probe = connect(Settings(redis_url=server.url))
    try:
        await probe.redis.set(Keys("acme").inbound, "not a stream")
    finally:
        await probe.close()
    params, headers = signed_sms(client, "hello")
    assert (await client.post("/twilio/sms", data=params, headers=headers)).status == 500

