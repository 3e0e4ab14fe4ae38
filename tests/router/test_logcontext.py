"""Logs an operator can follow: every line logged while one contact, conversation or
tenant is handled carries their ids as fields of their own, whichever module logs it."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.transport import PermanentFailure
from router import logcontext
from router.app.processes import JsonLogs, TextLogs
from router.app.web import application, runner_options
from router.settings import Settings
from tests.channels.test_sms_inbound import ACME_TOKEN, SANDBOX_TOKEN, TENANTS, Twilio
from tests.factories import outbound, world
from tests.workers.test_dispatch import ScriptedSender, queued_entry
from workers.dispatch import Dispatcher


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture):
    """The captured records as the JSON logs write them, through the filter `run` installs."""
    caplog.handler.addFilter(logcontext.LogContext())
    caplog.set_level(logging.INFO)
    return lambda: [json.loads(JsonLogs().format(record)) for record in caplog.records]


def test_lines_inside_about_carry_its_ids_and_lines_after_do_not(lines):
    log = logging.getLogger("tests.anything")
    with logcontext.about(tenant="acme", contact="c1"):
        log.info("taken in")
        with logcontext.about(conversation="v1"):
            log.info("queued")
        log.info("explicit", extra={"tenant": "globex"})  # a call's own extra wins
    log.info("after")
    fields = [(line["msg"], line.get("tenant"), line.get("conversation"), line.get("contact")) for line in lines()]
    assert fields == [
        ("taken in", "acme", None, "c1"),
        ("queued", "acme", "v1", "c1"),
        ("explicit", "globex", None, "c1"),
        ("after", None, None, None),
    ]


async def test_each_task_keeps_its_own_ids(lines):
    log = logging.getLogger("tests.anything")

    async def handle(tenant: str) -> None:
        logcontext.bind(tenant=tenant)
        await asyncio.sleep(0.01)
        log.info("handled %s", tenant)

    await asyncio.gather(handle("acme"), handle("globex"))
    assert sorted((line["msg"], line["tenant"]) for line in lines()) == [
        ("handled acme", "acme"),
        ("handled globex", "globex"),
    ]


def test_text_lines_show_the_ids_after_the_message():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent", None, None)
    record.tenant, record.conversation = "acme", "v1"
    assert TextLogs().format(record).endswith("x: sent [tenant=acme conversation=v1]")


async def test_an_sms_webhooks_access_line_names_the_tenant_and_the_contact_it_took_in(lines):
    settings = Settings(twilio_sandbox_token=SANDBOX_TOKEN)
    the_world = await world(TENANTS, {"ACME_TWILIO_TOKEN": ACME_TOKEN})
    server = TestServer(application(the_world.store, the_world.deployment, settings))
    await server.start_server(**runner_options(settings))  # the access log on, as `run web` has it
    async with TestClient(server) as client:
        twilio = Twilio(client, the_world)
        assert (await twilio.text("my meter")).status == 200
        [contact] = await twilio.inbound()
    access = [line for line in lines() if line["logger"] == "router.app.access"]
    assert [(line["path"], line.get("tenant"), line.get("contact")) for line in access] == [
        ("/twilio/sms", "acme", contact.id)
    ]


async def test_a_failed_sends_warning_names_its_tenant_and_conversation(lines):
    w = await world()
    message = outbound(conversation="conv-1")
    dispatcher = Dispatcher(w.store, {"sms": ScriptedSender(w.store, PermanentFailure("number does not exist"))})
    await dispatcher.handle([await queued_entry(w.store, message)])
    [warning] = [line for line in lines() if line["level"] == "warning"]
    assert (warning["tenant"], warning["conversation"]) == ("acme", "conv-1")
