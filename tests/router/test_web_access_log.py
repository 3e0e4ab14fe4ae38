"""The web process's access log: one line per request, its parts as fields of their own in
JSON logs, never a query string nor a credential in the path (an unsubscribe token), and no line for a
probe or a scrape that went well."""

from __future__ import annotations

import json
import logging

from aiohttp.test_utils import TestClient, TestServer

from router.app.processes import JsonLogs
from router.app.web import application, runner_options
from router.settings import Settings
from tests.factories import world


async def requests(settings: Settings, caplog) -> list[dict]:
    w = await world()
    caplog.set_level(logging.INFO, logger="router.app.access")
    server = TestServer(application(w.store, w.deployment, settings))
    await server.start_server(**runner_options(settings))  # as web.run makes its runner
    async with TestClient(server) as client:
        await client.get("/healthz")
        await client.get("/inbox/login")
        await client.get("/unsubscribe/acme/a-signed-token?t=another-token")
        await client.get("/no/such/page")
    return [json.loads(JsonLogs().format(r)) for r in caplog.records if r.name == "router.app.access"]


async def test_each_request_is_one_line_with_its_method_path_status_and_time(caplog):
    lines = await requests(Settings(), caplog)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/inbox/login", 200),
        ("GET", "/unsubscribe/acme/{token}", 404),  # a token that names nothing
        ("GET", "/no/such/page", 404),
    ]
    assert all(line["ms"] >= 0 and line["peer"] == "127.0.0.1" for line in lines)
    assert not any("token" in json.dumps(line).replace("{token}", "") for line in lines)


async def test_access_log_off_writes_none(caplog):
    assert await requests(Settings(access_log=False), caplog) == []
