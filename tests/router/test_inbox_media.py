"""Voicemail recordings and MMS media behind the inbox's login: fetched by the web
process from Twilio (here its local stand-in) with the tenant's credentials, only
the URLs the conversation's history holds, and only from Twilio's hosts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer

from router import events
from router.app import web
from router.app.inbox import accounts
from router.app.inbox.media import STORAGE_HOSTS, credentials, fetch_url
from router.config import resolve_secrets
from router.settings import Settings
from tests.channels.twilio_api import TwilioApi
from tests.factories import deployment, world
from tests.router.test_inbox_pages import DEPLOYMENT, PASSWORD, Inbox, cheap_hashes, logged_in  # noqa: F401

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "acme-twilio-token"
WITH_TWILIO = DEPLOYMENT.replace(
    "wrapup_seconds = 60\n",
    f'wrapup_seconds = 60\ntwilio = {{ account_sid = "{ACCOUNT}", auth_token_env = "ACME_TWILIO_TOKEN" }}\n',
    1,
)
RECORDING = f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE0123.mp3"
PHOTO = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/MM01/Media/ME01"


@dataclass
class Twilioed(Inbox):
    api: TwilioApi


@pytest.fixture
async def inbox() -> AsyncIterator[Twilioed]:
    async with TwilioApi() as api:
        w = await world(WITH_TWILIO, {"ACME_TWILIO_TOKEN": TOKEN})
        for login, tenant in (("amy", "acme"), ("zoe", "acme"), ("gus", "globex")):
            await accounts.add(w.store, login, PASSWORD, "agent", {tenant: login})
        settings = Settings(twilio_api_base=api.url, attachment_max_bytes=64 * 1024)
        async with TestServer(web.application(w.store, w.deployment, settings)) as server:
            yield Twilioed(w, server, api)


def media(url: str, content_type: str, filename: str = "") -> events.Attachment:
    return events.Attachment(url=url, content_type=content_type, filename=filename)


async def test_a_recording_and_mms_media_are_fetched_with_the_tenants_credentials(inbox: Twilioed) -> None:
    w, api = inbox.world, inbox.api
    api.media[RECORDING] = ("audio/mpeg", b"ID3 the recording")
    api.media[PHOTO] = "redirect:" + api.url + "/storage/ME01.jpg"  # Twilio sends media on to its storage
    api.media["/storage/ME01.jpg"] = ("image/jpeg", b"\xff\xd8\xff a photo")
    await w.available("amy")
    voicemail = await w.arrive(
        channel="voice",
        kind="voicemail",
        body="call me",
        attachments=(media("https://api.twilio.com" + RECORDING, "audio/mpeg", "voicemail.mp3"),),
    )
    await w.accept_offer("amy")
    await w.arrive(body="my meter", attachments=(media("https://api.twilio.com" + PHOTO, "image/jpeg"),))
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/c/{voicemail}")).text()
        assert "api.twilio.com" not in page  # no link an agent's browser could not open
        # each media link once (a picture is linked by its image and by its name)
        links = list(dict.fromkeys(re.findall(r'href="(/inbox/t/acme/c/[^"]+/media/\d+)"', page)))
        assert len(links) == 2
        bodies = {}
        for link in links:
            response = await client.get(link)
            assert response.status == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Content-Security-Policy"].startswith("sandbox")
            bodies[response.headers["Content-Type"]] = await response.read()
        assert bodies == {"audio/mpeg": b"ID3 the recording", "image/jpeg": b"\xff\xd8\xff a photo"}
    fetched = {r.path: r.auth for r in api.requests}
    assert fetched[RECORDING] == fetched[PHOTO] == (ACCOUNT, TOKEN)


def test_redirects_stay_on_twilios_storage_and_credentials_go_to_twilios_api_only() -> None:
    settings = Settings()
    tenant = resolve_secrets(deployment(WITH_TWILIO), {"ACME_TWILIO_TOKEN": TOKEN}).tenant("acme")
    s3 = "https://s3-external-1.amazonaws.com/media.twiliocdn.com/AC/ME01"
    assert fetch_url(s3, settings, STORAGE_HOSTS) == s3 and credentials(s3, tenant, settings) == {}
    assert fetch_url(s3, settings) is None  # a history URL must be Twilio's own
    assert fetch_url("https://evil.example/x", settings, STORAGE_HOSTS) is None
    assert fetch_url("https://169.254.169.254/latest", settings, STORAGE_HOSTS) is None
    assert credentials("https://api.twilio.com" + RECORDING, tenant, settings)["Authorization"].startswith("Basic ")
    assert credentials("http://api.twilio.com" + RECORDING, tenant, settings) == {}


async def test_only_the_conversations_own_urls_on_twilios_hosts_are_fetched(inbox: Twilioed) -> None:
    w, api = inbox.world, inbox.api
    api.media[RECORDING] = ("audio/mpeg", b"ID3")
    await w.available("amy")
    conversation = await w.arrive(
        body="look",
        attachments=(
            media("https://evil.example/steal", "image/png"),
            media("http://api.twilio.com" + RECORDING, "audio/mpeg"),  # not https
            media("https://api.twilio.com.evil.example" + RECORDING, "audio/mpeg"),
            media("https://user:pw@api.twilio.com" + RECORDING, "audio/mpeg"),
        ),
    )
    await w.accept_offer("amy")
    theirs = await w.arrive(channel="voice", kind="voicemail", address="+15559870000", body="zoe's", ago=1)
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        for n in range(4):
            assert (await client.get(f"/inbox/t/acme/c/{conversation}/media/{n}")).status == 404
        assert (await client.get(f"/inbox/t/acme/c/{conversation}/media/4")).status == 404
        assert (await client.get(f"/inbox/t/globex/c/{conversation}/media/0")).status == 404
        assert (await client.get(f"/inbox/t/acme/c/{theirs}/media/0")).status == 404  # not hers to see
    assert api.requests == []


async def test_media_over_the_size_cap_is_not_relayed(inbox: Twilioed) -> None:
    w, api = inbox.world, inbox.api
    api.media[RECORDING] = ("audio/mpeg", b"\0" * (64 * 1024 + 1))
    await w.available("amy")
    conversation = await w.arrive(
        channel="voice",
        kind="voicemail",
        body="",
        attachments=(media("https://api.twilio.com" + RECORDING, "audio/mpeg"),),
    )
    await w.accept_offer("amy")
    client, _csrf = await logged_in(inbox, "amy")
    async with client:
        response = await client.get(f"/inbox/t/acme/c/{conversation}/media/0")
        assert response.status == 502 and "over" in await response.text()
