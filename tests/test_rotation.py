"""Every secret that signs something rotates without downtime: the variable holds
"NEW,OLD" while the processes restart, the new key signs, and what the old one signed
(a webhook in flight, a visitor's token, a link in a sent mail) still verifies."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.telegram import deeplinks
from channels.telegram.webhook import SECRET_HEADER
from channels.webchat import identity
from router.app.web import application
from router.appkeys import DEPLOYMENT, STORE
from router.config import resolve_secrets
from router.errors import ConfigError
from router.keyring import KeyRing
from router.settings import Settings
from tests.channels import telegram_api
from tests.factories import deployment, world
from workers.campaigns import unsubscribe

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
TENANTS = """
[[tenants]]
id = "acme"
entry = { default = "support" }
[tenants.telegram]
token_env = "ACME_TELEGRAM_TOKEN"
secret_env = "ACME_TELEGRAM_SECRET"
link_key_env = "ACME_TELEGRAM_LINK_KEY"
[tenants.webchat]
identity_secret_env = "ACME_IDENTITY_SECRET"
[[tenants.queues]]
id = "support"
"""
ENV = {"ACME_TELEGRAM_TOKEN": "7000000001:AAHacmeTestToken-0123456789abcdefghi"}


def acme(keys: str):
    env = ENV | {"ACME_TELEGRAM_SECRET": keys, "ACME_TELEGRAM_LINK_KEY": keys, "ACME_IDENTITY_SECRET": keys}
    return resolve_secrets(deployment(TENANTS), env).tenants[0]


def test_a_key_ring_is_newest_first_and_ignores_spaces_and_empty_parts() -> None:
    ring = KeyRing.parse(f" {NEW} ,, {OLD} ")
    assert (ring.current, ring.keys) == (NEW, (NEW, OLD))
    assert not KeyRing.parse(" , ")
    assert ring.any(lambda key: key == OLD) and not ring.any(lambda key: key == "other")


def test_a_customer_signed_by_the_tenants_site_with_either_key_is_accepted_during_a_rotation() -> None:
    tenant = acme(f"{NEW},{OLD}")
    for key in (NEW, OLD):
        signature = identity.customer_signature(key, "email", "jane@example.com")
        assert identity.identified_visitor(tenant.webchat, "email", "jane@example.com", signature) == (
            "email:jane@example.com"
        )
    after = acme(NEW)  # the old key dropped: what it signs is refused
    stale = identity.customer_signature(OLD, "email", "jane@example.com")
    with pytest.raises(identity.Refused):
        identity.identified_visitor(after.webchat, "email", "jane@example.com", stale)
    with pytest.raises(ConfigError, match="shorter than 16"):
        acme(f"{NEW},short")  # every listed key must be strong enough


def test_telegram_start_links_signed_with_the_old_key_still_link_the_customer() -> None:
    customer = "01J0000000000000000000000A"
    old_link = deeplinks.customer_payload(acme(OLD), customer)
    rotating = acme(f"{NEW},{OLD}")
    assert deeplinks.resolve(rotating, old_link).customer == customer
    new_link = deeplinks.customer_payload(rotating, customer)
    assert new_link != old_link and deeplinks.resolve(acme(NEW), new_link).customer == customer
    assert deeplinks.resolve(acme(NEW), old_link).forged


async def test_telegram_webhooks_with_the_old_or_the_new_secret_pass_during_a_rotation() -> None:
    w = await world(TENANTS, env=ENV | {"ACME_TELEGRAM_SECRET": f"{NEW},{OLD}", "ACME_TELEGRAM_LINK_KEY": NEW,
                                        "ACME_IDENTITY_SECRET": NEW})  # fmt: skip
    app = application(w.store, w.deployment, Settings())
    async with TestClient(TestServer(app)) as client:
        for update_id, secret in enumerate((OLD, NEW, "wrong-secret"), start=1):
            update = telegram_api.message(text="hi") | {"update_id": update_id}
            response = await client.post("/telegram/acme", json=update, headers={SECRET_HEADER: secret})
            assert response.status == (403 if secret == "wrong-secret" else 200)


async def test_a_visitor_token_signed_before_the_store_kept_secret_rotated_still_verifies() -> None:
    w = await world()
    before = await identity.server_secret(w.store, Settings())
    token = identity.sign_token(before, "acme", "v-" + "ab" * 16)
    await identity.rotate_secret(w.store)
    after = await identity.server_secret(w.store, Settings())
    assert after.current != before.current and after.keys[1] == before.current
    assert identity.verify_token(after, "acme", token) == "v-" + "ab" * 16
    assert identity.sign_token(after, "acme", "v-" + "ab" * 16) != token  # re-signed with the new key
    from_env = await identity.server_secret(w.store, Settings(webchat_secret=f"{NEW},{OLD}"))
    assert from_env.keys == (NEW, OLD)


async def test_an_unsubscribe_link_in_a_mail_sent_before_the_key_rotated_still_unsubscribes() -> None:
    w = await world()
    token = unsubscribe.make_token(await unsubscribe.signing_key(w.store, "acme"), "acme", "email", "j@x.org", "c1")
    await unsubscribe.rotate_signing_key(w.store, "acme")
    app = web.Application()
    app[STORE], app[DEPLOYMENT] = w.store, w.deployment
    unsubscribe.setup(app)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get(f"/unsubscribe/acme/{token}")).status == 200
        forged = unsubscribe.make_token(b"x" * 32, "acme", "email", "j@x.org", "c1")
        assert (await client.get(f"/unsubscribe/acme/{forged}")).status == 404
    for _ in range(unsubscribe.KEPT_KEYS):  # five more rotations and the oldest key is gone
        await unsubscribe.rotate_signing_key(w.store, "acme")
    with pytest.raises(unsubscribe.BadToken):
        unsubscribe.read_token(await unsubscribe.verifying_keys(w.store, "acme"), "acme", token)
