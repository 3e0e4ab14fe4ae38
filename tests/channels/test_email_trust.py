"""Who handed us a mail: the SMTP peer's address and our own MX's stamp, never the
addresses a sender writes."""

from __future__ import annotations

import pytest

from channels.email.trust import MailTrust, authenticated_domains, peer_address
from router.config.fax import FaxGateway

GATEWAY = FaxGateway(
    name="efax",
    from_domains=["efax.example"],
    number_pattern=r"from (?P<number>\+?\d+)",
    trusted_networks=["203.0.113.0/24"],
)


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        (("203.0.113.7", 40123), "203.0.113.7"),
        (("::ffff:203.0.113.7", 40123, 0, 0), "203.0.113.7"),  # a dual-stack socket's IPv4 peer
        (("fe80::1%eth0", 25, 0, 2), "fe80::1"),
        ("/run/smtp.sock", None),
        (None, None),
    ],
)
def test_the_peer_address_is_read_from_aiosmtpds_session_peer(peer: object, address: str | None) -> None:
    found = peer_address(peer)
    assert (str(found) if found is not None else None) == address


def test_a_gateway_is_trusted_from_its_networks_and_nowhere_else() -> None:
    trust = MailTrust(own_networks=("10.0.0.0/8",))
    assert trust.gateway(GATEWAY, ("::ffff:203.0.113.7", 25, 0, 0), [])
    assert not trust.gateway(GATEWAY, ("198.51.100.1", 25), [])
    assert not trust.gateway(GATEWAY, ("10.0.0.5", 25), [])  # our MX, but nothing says it is the gateway's


def test_only_the_topmost_stamp_of_our_own_mx_counts() -> None:
    stamps = [
        "mx.acme.example; dkim=none; spf=fail smtp.mailfrom=efax.example",  # ours, added last: on top
        "mx.acme.example; dkim=pass header.d=efax.example",  # the sender's forgery below it
    ]
    assert authenticated_domains(stamps, "mx.acme.example") == set()
    assert authenticated_domains(stamps[1:], "mx.acme.example") == {"efax.example"}
    assert authenticated_domains(stamps[1:], "") == set()  # not configured: not read


def test_dkim_counts_its_signing_domain_and_spf_its_mail_from_domain_only() -> None:
    stamp = (
        "mx.acme.example; dkim=pass header.i=@sig.example header.d=sig.example; spf=pass smtp.mailfrom=x@env.example"
    )
    assert authenticated_domains([stamp], "mx.acme.example") == {"sig.example", "env.example"}
    assert authenticated_domains(["mx.acme.example; spf=pass header.d=efax.example"], "mx.acme.example") == set()
