"""A tenant's email section: the addresses and domains it receives mail for, the
address its mail leaves from, and a mailbox at a provider to fetch mail from (IMAP)."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from router.config.fields import EnvName, FieldError

_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


ImapTls = Literal["tls", "starttls", "none"]


class ImapMailbox(msgspec.Struct, forbid_unknown_fields=True):
    """A mailbox the `imap` process fetches mail from, for centres whose mail stays at a
    provider: each message becomes a contact once, as if it had come by SMTP to `address`."""

    host: str
    user: str
    password_env: EnvName  # the password is read from this environment variable, never the file
    port: int = 0  # 0: 993 with tls, 143 otherwise
    tls: ImapTls = "tls"  # tls (implicit, verified), starttls (required, verified) or none (tests, loopback)
    folder: str = "INBOX"
    # where a taken-in message is moved; "": it stays in `folder`, flagged \Seen and ACCEPTED_KEYWORD
    done_folder: str = ""
    address: str = ""  # the tenant's address this mailbox receives for; default: the tenant's first
    ca_file: str = ""  # trust this CA bundle for the server (a private CA); default: the system's
    password: str = ""  # filled from password_env by load_deployment

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise FieldError("host", f"{self.host!r} is not a host name")
        if not 0 <= self.port <= 65535:
            raise FieldError("port", f"{self.port} is not a port")
        for field in ("folder", "done_folder"):
            if any(c in getattr(self, field) for c in "\r\n\0"):
                raise FieldError(field, "a folder name cannot hold a line break")
        if not self.folder:
            raise FieldError("folder", "name the folder to fetch from (INBOX, say)")
        if self.done_folder and self.done_folder == self.folder:
            raise FieldError("done_folder", "must differ from folder (or be empty: mail is flagged instead)")

    @property
    def server_port(self) -> int:
        return self.port or (993 if self.tls == "tls" else 143)


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
    imap: ImapMailbox | None = None  # fetch mail from this mailbox too (the `imap` process)

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
        if self.imap is not None:
            if not self.addresses and not self.imap.address:
                raise FieldError("imap.address", "name the address the mailbox receives for (or give addresses)")
            if self.imap.address and not self.receives(self.imap.address):
                raise FieldError("imap.address", f"{self.imap.address!r} is not an address or domain of this tenant")

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

    def imap_address(self) -> str:
        """The address mail fetched from the mailbox is taken as sent to."""
        return (self.imap.address if self.imap and self.imap.address else self.addresses[0]).lower()
