"""May we contact this person (router/consent.py): the campaigns' own rule (lib.lua's
contact_refusal), callable from Python by anything that writes to customers unasked."""

from __future__ import annotations

import re

import pytest

from router import consent, customers, scripts
from router.app import cli
from router.keys import Keys
from tests.factories import SUPPORT, world

KEYS = Keys("acme")
JANE, JANE_EMAIL = "+12125550000", "jane@example.com"
CHANNEL_SCOPE = SUPPORT.replace('id = "acme"\n', 'id = "acme"\nopt_out_scope = "channel"\n', 1)


def test_lib_lua_knows_which_channels_each_kind_of_address_reaches():
    lua = re.search(r"local KIND_CHANNELS = \{(.*?)\}\n\n", scripts.lib(), re.DOTALL)
    assert lua is not None
    table = {kind: set(chans.split(", ")) for kind, chans in re.findall(r"(\w+) = \{([^}]*)\}", lua.group(1))}
    table = {kind: {c.strip('"') for c in chans} for kind, chans in table.items()}
    expected: dict[str, set[str]] = {}
    for channel, kind in customers.ADDRESS_KIND.items():
        expected.setdefault(kind, set()).add(channel)
    assert table == expected


async def test_a_number_that_texted_stop_may_not_be_called_or_emailed_under_the_person_scope():
    w = await world()
    await w.arrive(channel="sms", address=JANE, body="hello")
    customer = await customers.find(w.store, "acme", customers.identity("sms", JANE))
    await customers.link(w.store, "acme", customer, customers.identity("email", JANE_EMAIL))
    assert await consent.may_contact(w.store, w.tenant, "email", JANE_EMAIL)
    await w.store.redis.sadd(KEYS.suppression("sms"), JANE)
    assert await consent.refusal(w.store, w.tenant, "voice", JANE) == "opted_out"
    assert await consent.refusal(w.store, w.tenant, "email", JANE_EMAIL) == "opted_out"
    assert not await consent.may_contact(w.store, w.tenant, "sms", JANE)
    assert await consent.customer_refusal(w.store, w.tenant, customer, "email") == "opted_out"
    assert await consent.customer_refusal(w.store, w.tenant, customer, "telegram") == "no_address"


async def test_under_the_channel_scope_only_the_channels_own_list_counts():
    w = await world(CHANNEL_SCOPE)
    await w.store.redis.sadd(KEYS.suppression("sms"), JANE)
    assert await consent.refusal(w.store, w.tenant, "voice", JANE) is None
    assert await consent.refusal(w.store, w.tenant, "sms", JANE) == "opted_out"
    await w.store.redis.sadd(KEYS.do_not_contact, JANE)
    assert await consent.refusal(w.store, w.tenant, "voice", JANE) == "do_not_contact"


async def test_a_pending_revocation_holds_every_channel_whatever_the_scope():
    w = await world(CHANNEL_SCOPE)
    await w.store.redis.hset(KEYS.revocations, customers.identity("sms", JANE), b"{}")
    assert await consent.refusal(w.store, w.tenant, "voice", JANE) == "revocation_pending"
    assert consent.REASONS["revocation_pending"]


def test_config_check_refuses_an_unknown_opt_out_scope(tmp_path, monkeypatch, capsys):
    path = tmp_path / "centre.toml"
    path.write_text(SUPPORT.replace('id = "acme"\n', 'id = "acme"\nopt_out_scope = "everyone"\n', 1))
    for name in ("LOG_LEVEL", "REDIS_URL", "REDIS_CLUSTER", "SMTP_REQUIRE_STARTTLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTACTROUTER_CONFIG", str(path))
    assert cli.main(["config", "check"]) == 2
    assert "`$.tenants[0].opt_out_scope`" in capsys.readouterr().err


@pytest.mark.parametrize("scope", ["person", "channel"])
def test_config_check_takes_either_scope(tmp_path, monkeypatch, capsys, scope):
    path = tmp_path / "centre.toml"
    path.write_text(SUPPORT.replace('id = "acme"\n', f'id = "acme"\nopt_out_scope = "{scope}"\n', 1))
    for name in ("LOG_LEVEL", "REDIS_URL", "REDIS_CLUSTER", "SMTP_REQUIRE_STARTTLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTACTROUTER_CONFIG", str(path))
    assert cli.main(["config", "check"]) == 0
