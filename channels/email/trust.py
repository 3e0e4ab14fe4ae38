"""Who handed us a mail: the address a From line or a return path names is the
sender's word, the SMTP peer's address (aiosmtpd's session.peer) is not.

Mail that moves state on its sender's say-so (a fax gateway's fax or report, a
delivery status notification) counts only when it came from where such mail comes
from:
- a fax gateway's: from one of the gateway's `trusted_networks`; or, without any,
  handed over by one of our own mail servers (SMTP_TRUSTED_NETWORKS);
- a DSN: handed over by one of our own mail servers: the MX in front of the smtp
  process (every real bounce arrives through it) or the relay, when it delivers
  its bounces straight to us.
When our mail servers stamp Authentication-Results (SMTP_AUTHSERV_ID), a gateway's
mail handed over by them counts too when that stamp says the gateway's domain
passed DKIM or SPF, and, with no trusted network of its own, only then.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from router.config.fax import FaxGateway
from router.settings import Settings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# "dkim=pass ... header.d=efax.example" or "spf=pass ... smtp.mailfrom=bounce@efax.example",
# one method result of an Authentication-Results header (RFC 8601 section 2.2)
_RESULT = re.compile(r"^\s*(?P<method>[a-z0-9_-]+)\s*=\s*(?P<result>[a-z]+)(?P<props>.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|smtp\.mailfrom)\s*=\s*\"?([^\s;\"]+)", re.IGNORECASE)
_COMMENT = re.compile(r"\([^()]*\)")


@cache
def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """Configured CIDRs, parsed once (config checked them)."""
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def peer_address(peer: object) -> Address | None:
    """The IP address of aiosmtpd's session.peer ((host, port, ...) for TCP); None when
    there is none to check (a Unix socket, a test double)."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # fe80::1%eth0: the zone is no part of it
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
    return address


def within(address: Address | None, cidrs: Iterable[str]) -> bool:
    return address is not None and any(address in network for network in networks(tuple(cidrs)))


def gateway_domains(gateway: FaxGateway) -> set[str]:
    return {d.lower() for d in gateway.from_domains} | {a.rpartition("@")[2].lower() for a in gateway.from_addresses}


def authenticated_domains(headers: Iterable[str], authserv_id: str) -> set[str]:
    """The domains that passed DKIM (header.d) or SPF (smtp.mailfrom) by the topmost
    Authentication-Results of ours (`authserv_id`). Only ours counts: a sender can
    write the header too, and our MTA adds its own on top (RFC 8601 section 5)."""
    if not authserv_id:
        return set()
    for header in headers:  # topmost first, as the message has them
        serv, _, results = _COMMENT.sub(" ", header).partition(";")
        if [w.lower() for w in serv.split()[:1]] != [authserv_id.lower()]:  # "id" or "id version"
            continue
        passed = set()
        for result in results.split(";"):
            found = _RESULT.match(result)
            if found is None or found["result"].lower() != "pass" or found["method"].lower() not in ("dkim", "spf"):
                continue
            for prop, value in _PROPERTY.findall(found["props"]):
                if (prop.lower() == "smtp.mailfrom") == (found["method"].lower() == "spf"):
                    passed.add(value.rpartition("@")[2].lower().rstrip("."))
        return passed
    return set()


@dataclass(frozen=True)
class MailTrust:
    """The deployment's own mail servers, and how to read their stamp."""

    own_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    authserv_id: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> MailTrust:
        return cls(tuple(settings.smtp_trusted_networks), settings.smtp_authserv_id.lower())

    def ours(self, peer: object) -> bool:
        """The peer is one of our own mail servers (the MX, the relay)."""
        return within(peer_address(peer), self.own_networks)

    def gateway(self, gateway: FaxGateway, peer: object, auth_results: Iterable[str]) -> bool:
        """Mail that claims to be this gateway's came from it (see the module's docstring)."""
        address = peer_address(peer)
        if within(address, gateway.trusted_networks):
            return True
        if not within(address, self.own_networks):
            return False
        if self.authserv_id:
            passed = authenticated_domains(auth_results, self.authserv_id)
            domains = gateway_domains(gateway)
            if any(p == d or p.endswith("." + d) for p in passed for d in domains):
                return True
        return not gateway.trusted_networks and not self.authserv_id
