"""A tenant's fax section: the fax-to-email gateways whose mail is fax, and the address
faxes are sent from."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import msgspec

from router.config.email import EmailChannel
from router.config.fields import FieldError, Name, Region

# pattern field -> the named groups it must have
_PATTERNS = {
    "number_pattern": ("number",),
    "pages_pattern": ("pages",),
    "status_pattern_ok": (),
    "status_pattern_failed": (),
}


def _check_pattern(field: str, pattern: str, groups: tuple[str, ...]) -> None:
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise FieldError(field, f"not a regular expression: {exc}") from None
    for group in groups:
        if group not in compiled.groupindex:
            raise FieldError(field, f"needs a named group (?P<{group}>...)")


class FaxGateway(msgspec.Struct, forbid_unknown_fields=True):
    """A fax-to-email service: how its mail is recognised and read, and where replies go.

    The patterns are Python regular expressions (case-insensitive), checked at load."""

    name: Name
    from_addresses: list[str] = []  # its mail comes From (or with a return path) one of these
    from_domains: list[str] = []  # ... or any address of these domains
    number_pattern: str = ""  # names a group `number` (and may name `pages`)
    pages_pattern: str = ""  # names a group `pages`: the page count the gateway claims
    search_in: Literal["subject", "body", "both"] = "both"
    region: Region = "US"  # for numbers without a country code
    outbound_address: str = ""  # email-to-fax, e.g. "{number}@fax.gateway.example"; empty: receive only
    number_format: Literal["e164", "e164_digits", "national_digits"] = "e164_digits"  # {number} in it
    # its confirmation and failure mails; a group `ref` may name our Message-ID, `reason` the failure
    status_pattern_ok: str = ""
    status_pattern_failed: str = ""
    # CIDRs its mail servers connect to the smtp process from: a From address is easily
    # forged, so mail that claims to be the gateway's from elsewhere is ordinary email.
    # Empty: only mail handed over by our own mail servers (Settings.smtp_trusted_networks).
    trusted_networks: list[str] = []

    def __post_init__(self) -> None:
        """Recognisable, its patterns compile with the groups they need, its address takes a number."""
        import phonenumbers  # only here: the rest of the configuration needs no phone numbers

        if not self.from_addresses and not self.from_domains:
            raise FieldError("", "a gateway needs from_addresses or from_domains to recognise its mail")
        if not self.number_pattern:
            raise FieldError("number_pattern", "required (a pattern with a group `number`)")
        for field, groups in _PATTERNS.items():
            if pattern := getattr(self, field):
                _check_pattern(field, pattern, groups)
        for index, network in enumerate(self.trusted_networks):
            try:
                ipaddress.ip_network(network)  # strict: 10.0.0.1/8 is a typo, not a network
            except ValueError as exc:
                raise FieldError(f"trusted_networks[{index}]", str(exc)) from None
        if self.region not in phonenumbers.SUPPORTED_REGIONS:
            raise FieldError("region", f"{self.region!r} is not a region phone numbers know")
        if self.outbound_address:
            self._check_outbound_address()

    def _check_outbound_address(self) -> None:
        try:
            sample = self.outbound_address.format(number="15551234567")
        except (KeyError, IndexError, ValueError) as exc:
            raise FieldError(
                "outbound_address", f"{self.outbound_address!r} may use only {{number}} ({exc!r})"
            ) from None
        if "{number}" not in self.outbound_address or not re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.\w+", sample):
            raise FieldError("outbound_address", f"{self.outbound_address!r} is not an address with {{number}}")


class FaxChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Fax for a tenant: the gateways whose mail (to the tenant's email addresses) is fax."""

    gateways: list[FaxGateway] = []
    address: str = ""  # the tenant's address faxes are sent from (one of its email addresses/domains)

    def __post_init__(self) -> None:
        names = [g.name for g in self.gateways]
        if len(set(names)) != len(names):
            raise FieldError("gateways", "gateway names must be unique")

    def check_sender(self, email: EmailChannel) -> None:
        """Faxes leave from one of the tenant's email addresses (FieldError: the field
        inside this section)."""
        if self.address and not email.receives(self.address):
            raise FieldError("address", f"{self.address!r} is not one of this tenant's email addresses or domains")
        if any(g.outbound_address for g in self.gateways) and not (self.address or email.sender()):
            raise FieldError("address", "sending faxes needs an address to send from (or email.addresses)")
