"""The widget's "leave your email" form: an email contact, once, from allowed pages only."""

from __future__ import annotations

from tests.channels.test_webchat_socket import SHOP, chat_server, chat_world, inbound

FORM = {"id": "offline-0000001", "name": "Jane", "email": "Jane@Example.com", "message": "Call me <maybe>"}


async def test_the_offline_form_becomes_an_email_contact_once() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        first = await client.post("/webchat/acme/offline", json=FORM, headers={"Origin": SHOP})
        again = await client.post("/webchat/acme/offline", json=FORM, headers={"Origin": SHOP})
        assert (first.status, await first.json()) == (200, {"ok": True, "duplicate": False})
        assert (await again.json())["duplicate"] is True
        assert first.headers["Access-Control-Allow-Origin"] == SHOP
    [contact] = await inbound(w)
    assert (contact.channel, contact.address, contact.body) == ("email", "Jane@Example.com", "Call me <maybe>")
    assert (contact.subject, contact.queue) == ("Web chat message from Jane", "support")
    assert contact.metadata == {"source": "webchat-offline", "name": "Jane", "email_verified": "no"}


async def test_the_offline_form_refuses_other_sites_bad_addresses_and_long_messages() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        preflight = await client.options(
            "/webchat/acme/offline", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == SHOP
        foreign = {"Origin": "https://evil.example"}
        assert (await client.options("/webchat/acme/offline", headers=foreign)).status == 403
        assert (await client.post("/webchat/acme/offline", json=FORM, headers=foreign)).status == 403

        for change, status, code in (
            ({"email": "not an address"}, 400, "bad_email"),
            ({"message": "  "}, 400, "empty"),
            ({"message": "x" * 201}, 413, "too_large"),
            ({"id": "no"}, 400, "bad_request"),
        ):
            response = await client.post("/webchat/acme/offline", json={**FORM, **change}, headers={"Origin": SHOP})
            assert (response.status, (await response.json())["code"]) == (status, code), change
        not_json = await client.post("/webchat/acme/offline", data=b"{", headers={"Origin": SHOP})
        assert not_json.status == 400
    assert await inbound(w) == []


async def test_the_offline_form_is_rate_limited_per_address() -> None:
    w = await chat_world()
    async with chat_server(w) as client:
        statuses = []
        for n in range(6):
            form = {**FORM, "id": f"offline-flood-{n:04d}"}
            statuses.append((await client.post("/webchat/acme/offline", json=form, headers={"Origin": SHOP})).status)
    assert statuses == [200] * 5 + [429]
