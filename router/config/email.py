"""A tenant's email section: the addresses and domains it receives mail for, and the
address its mail leaves from."""

from __future__ import annotations

import re

import msgspec

from router.config.fields import FieldError

_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


class EmailChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Email for a tenant: the SMTP server accepts mail for these addresses and for any
    address of these domains (an exact address wins over another tenant's domain). Each
    address and domain belongs to one tenant (`Deployment` checks that across tenants)."""

    addresses: list[str] = []  # e.g. ["help@acme.example"]
    domains: list[str] = []  # e.g. ["acme.example"]: every address @acme.example
    # Outbound mail leaves from this address (one the server receives for, so replies
    # come back); default: the first of `addresses`. from_name is its display name.
    from_address: str = ""
    from_name: str = ""  # default: the tenant's name

    def __post_init__(self) -> None:
        for index, address in enumerate(self.addresses):
            local, _, domain = address.lower().rpartition("@")
            if not local or not _DOMAIN.fullmatch(domain):
                raise FieldError(f"addresses[{index}]", f"{address!r} is not an email address")
        for index, domain in enumerate(self.domains):
            if not _DOMAIN.fullmatch(domain.lower()):
                raise FieldError(f"domains[{index}]", f"{domain!r} is not an email domain")
        if self.from_address and not self.receives(self.from_address):
            raise FieldError(
                "from_address",
                f"{self.from_address!r} is not one of this tenant's addresses or domains "
                "(replies to it would be refused)",
            )

    def names(self) -> list[tuple[str, str, str]]:
        """(field, as written, key) for each address and domain: the key is the address in
        lower case, or "@" and the domain, so one tenant's names can be told from another's."""
        return [(f"addresses[{i}]", a, a.lower()) for i, a in enumerate(self.addresses)] + [
            (f"domains[{i}]", d, "@" + d.lower()) for i, d in enumerate(self.domains)
        ]

    def receives(self, address: str) -> bool:
        """Whether mail to the address is the tenant's: one of its addresses, or of its domains."""
        owned = {key for _field, _raw, key in self.names()}
        address = address.lower()
        return address in owned or "@" + address.rpartition("@")[2] in owned

    def sender(self) -> str:
        """The address outbound mail leaves from ("" when the tenant has none)."""
        return (self.from_address or (self.addresses[0] if self.addresses else "")).lower()
