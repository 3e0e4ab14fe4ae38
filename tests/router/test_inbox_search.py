"""Supervisors' conversation search: by address, customer, text, date and disposition,
within the supervisor's own tenants."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import pytest

from router import agents
from router.app.inbox import search
from tests.factories import PROMISE
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in, start_inbox  # noqa: F401 - autouse fixture


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


async def closed_conversation(inbox: Inbox, address: str, body: str, disposition: str, **fields) -> str:
    w = inbox.world
    conversation = await w.assigned_to("amy", address=address, body=body, **fields)
    terms = PROMISE if disposition == "promise_to_pay" else {}
    await agents.close(w.store, w.tenant, "amy", conversation, disposition, **terms)
    await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
    return conversation


def found(page: str) -> list[str]:
    return re.findall(r'<tr data-conversation="([^"]+)"', page)


async def test_search_by_address_text_and_disposition(inbox: Inbox) -> None:
    meter = await closed_conversation(inbox, "+15551230001", "My meter is broken", "resolved")
    bill = await closed_conversation(inbox, "+15551230002", "My bill is too high", "promise_to_pay")
    mail = await closed_conversation(
        inbox, "jane@example.com", "Invoice copy please", "resolved", channel="email", subject="Invoice"
    )
    client, _token = await logged_in(inbox, "sue")
    async with client:

        async def hits(**params: str) -> list[str]:
            response = await client.get("/inbox/search", params={"go": "1", "tenant": "acme", **params})
            assert response.status == 200
            return found(await response.text())

        assert set(await hits()) == {meter, bill, mail}  # the last week's conversations
        assert await hits(address="+15551230002") == [bill]
        assert await hits(address="(555) 123-0001") == [meter]  # a number as people write it
        assert await hits(address="jane@") == [mail]  # part of an address
        assert await hits(text="METER") == [meter]
        assert await hits(text="invoice", address="jane@example.com") == [mail]  # subjects and bodies
        assert await hits(disposition="promise_to_pay") == [bill]
        assert await hits(disposition="resolved", text="bill") == []
        customer = (await inbox.world.conversation(meter))["customer"]
        assert await hits(customer=customer) == [meter]


async def test_search_by_date_in_the_tenants_time_zone(inbox: Inbox) -> None:
    conversation = await closed_conversation(inbox, "+15551230001", "hello", "resolved")
    today = dt.datetime.now(dt.UTC).date()
    client, _token = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/search", params={"go": "1", "date_from": str(today)})).text()
        assert found(page) == [conversation]
        yesterday = str(today - dt.timedelta(days=1))
        page = await (await client.get("/inbox/search", params={"go": "1", "date_to": yesterday})).text()
        assert found(page) == []
        response = await client.get("/inbox/search", params={"go": "1", "date_from": "last tuesday"})
        assert response.status == 400 and "is not a date" in await response.text()


async def test_search_shows_only_the_supervisors_tenants_and_is_not_for_agents(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "sue")
    async with client:
        response = await client.get("/inbox/search", params={"go": "1", "tenant": "globex"})
        assert response.status == 404
    client, _token = await logged_in(inbox, "amy")
    async with client:
        assert (await client.get("/inbox/search")).status == 403


async def test_search_text_is_shown_escaped(inbox: Inbox) -> None:
    await closed_conversation(inbox, "+15551230001", "hello", "resolved")
    client, _token = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get("/inbox/search", params={"text": '"><script>x</script>'})).text()
        assert "<script>x</script>" not in page


def test_the_query_parser_reads_dates_and_trims() -> None:
    query = search.parse({"address": "  +1555  ", "date_from": "2026-01-02"}, "acme")
    assert (query.tenant, query.address, query.date_from) == ("acme", "+1555", dt.date(2026, 1, 2))
    with pytest.raises(search.SearchError, match="date to"):
        search.parse({"date_to": "2026-13-01"}, "acme")
