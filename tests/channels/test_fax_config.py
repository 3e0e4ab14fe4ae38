"""Fax gateways in the deployment file: a gateway that could never work stops start-up
with a message naming the field."""

from __future__ import annotations

import pytest

from channels.fax import gateways
from router.config import load_deployment
from router.errors import ConfigError
from router.settings import Settings
from tests.factories import deployment

TENANT = """
[[tenants]]
id = "acme"
email = {{ addresses = ["fax@acme.example"] }}

[[tenants.queues]]
id = "support"

[tenants.fax]
address = "{address}"

[[tenants.fax.gateways]]
name = "efax"
{gateway}
"""
GOOD = """
from_domains = ["efax.example"]
number_pattern = 'Caller ID: (?P<number>[-\\d]+)'
"""


def config(gateway: str = GOOD, address: str = "fax@acme.example"):
    return deployment(TENANT.format(gateway=gateway, address=address))


def test_a_well_formed_gateway_loads() -> None:
    [gateway] = config().tenants[0].fax.gateways
    assert (gateway.name, gateway.search_in, gateway.region, gateway.number_format) == (
        "efax",
        "both",
        "US",
        "e164_digits",
    )


@pytest.mark.parametrize(
    ("gateway", "field", "reason"),
    [
        ("number_pattern = '(?P<number>\\\\d+)'", "gateways[0]", "needs from_addresses or from_domains"),
        ('from_domains = ["efax.example"]', "number_pattern", "required"),
        ("from_domains = ['efax.example']\nnumber_pattern = '(?P<number>[0-9'", "number_pattern", "not a regular"),
        ("from_domains = ['efax.example']\nnumber_pattern = 'Caller: (\\\\d+)'", "number_pattern", "(?P<number>"),
        (GOOD + "pages_pattern = '(\\\\d+) pages'", "pages_pattern", "(?P<pages>"),
        (GOOD + "status_pattern_failed = 'failed ('", "status_pattern_failed", "not a regular"),
        (GOOD + 'outbound_address = "fax@gateway.example"', "outbound_address", "with {number}"),
        (GOOD + 'outbound_address = "{number}@{domain}"', "outbound_address", "may use only {number}"),
        (GOOD + 'region = "XX"', "region", "not a region"),
        (GOOD + 'trusted_networks = ["203.0.113.0/24", "efax.example"]', "trusted_networks[1]", "does not appear"),
        (GOOD + 'trusted_networks = ["203.0.113.9/24"]', "trusted_networks[0]", "has host bits set"),
    ],
)
def test_a_gateway_that_cannot_work_is_refused_naming_the_field(gateway: str, field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(gateway)
    message = str(error.value)
    assert message.startswith("test.toml: `$.tenants[0].fax.gateways[0]"), message
    assert field in message and reason in message, message


def test_the_fax_address_must_be_one_the_tenant_receives_mail_at() -> None:
    with pytest.raises(ConfigError, match=r"fax\.address`: 'fax@other\.example' is not one of this tenant's"):
        config(address="fax@other.example")


def test_a_gateway_that_sends_faxes_needs_an_address_to_send_from() -> None:
    text = TENANT.replace('email = {{ addresses = ["fax@acme.example"] }}\n', "").format(
        gateway=GOOD + 'outbound_address = "{number}@send.efax.example"', address=""
    )
    with pytest.raises(ConfigError, match=r"fax\.address`: sending faxes needs an address to send from"):
        deployment(text)


def test_gateway_names_are_unique_within_a_tenant() -> None:
    text = TENANT.format(gateway=GOOD, address="") + '\n[[tenants.fax.gateways]]\nname = "efax"\n' + GOOD
    with pytest.raises(ConfigError, match=r"fax\.gateways`: gateway names must be unique"):
        deployment(text)


def test_the_outbound_address_carries_the_number_in_the_gateways_format() -> None:
    gateway = config(GOOD + 'outbound_address = "{number}@send.efax.example"').tenants[0].fax.gateways[0]
    assert gateways.outbound_address(gateway, "+15551234567") == "15551234567@send.efax.example"
    for number_format, expected in (("e164", "+15551234567"), ("national_digits", "5551234567")):
        custom = config(GOOD + f'outbound_address = "{{number}}@x.example"\nnumber_format = "{number_format}"')
        assert gateways.outbound_address(custom.tenants[0].fax.gateways[0], "+15551234567") == f"{expected}@x.example"


def test_the_demo_tenant_has_a_fax_gateway() -> None:
    acme = load_deployment(None).tenant("acme")
    assert acme.fax.gateways and acme.fax.gateways[0].outbound_address


def test_a_gateway_s_trusted_networks_load_as_cidrs() -> None:
    [gateway] = config(GOOD + 'trusted_networks = ["203.0.113.0/24", "2001:db8::/32"]').tenants[0].fax.gateways
    assert gateway.trusted_networks == ["203.0.113.0/24", "2001:db8::/32"]


def test_our_own_mail_servers_networks_come_from_the_environment_checked() -> None:
    assert Settings.from_env({}).smtp_trusted_networks == ["127.0.0.0/8", "::1/128"]
    settings = Settings.from_env({"SMTP_TRUSTED_NETWORKS": "10.1.0.0/16, 192.0.2.25/32", "SMTP_AUTHSERV_ID": "MX.acme"})
    assert (settings.smtp_trusted_networks, settings.smtp_authserv_id) == (["10.1.0.0/16", "192.0.2.25/32"], "mx.acme")
    with pytest.raises(ConfigError, match="SMTP_TRUSTED_NETWORKS"):
        Settings.from_env({"SMTP_TRUSTED_NETWORKS": "10.1.0.0/16,mx.example"})
