"""A tenant's fax gateways: which one a mail came from, what its patterns find,
and the address a fax to a number is mailed to."""

from __future__ import annotations

import re
from functools import cache

import phonenumbers

from router.config import Tenant
from router.config.fax import FaxGateway

# The part of a mail body the patterns read: gateway text is at the top, and an
# operator's pattern must never meet a megabyte of quoted text.
SEARCH_CHARS = 20_000


@cache
def compiled(pattern: str) -> re.Pattern[str] | None:
    """A configured pattern, compiled once (config checked that it compiles); None when unset."""
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def gateway_for(tenant: Tenant, *senders: str) -> FaxGateway | None:
    """The tenant's gateway that sent a mail, by its From address or return path."""
    addresses = [s.strip().strip("<>").lower() for s in senders if s and "@" in s]
    for gateway in tenant.fax.gateways:
        exact = {a.lower() for a in gateway.from_addresses}
        domains = {d.lower() for d in gateway.from_domains}
        for address in addresses:
            domain = address.rpartition("@")[2]
            # a gateway's mail often leaves from a subdomain (mail.efax.example)
            if address in exact or any(domain == d or domain.endswith("." + d) for d in domains):
                return gateway
    return None


def search_text(gateway: FaxGateway, subject: str, body: str) -> str:
    """What the gateway's number and page patterns read: its subject, body or both."""
    body = body[:SEARCH_CHARS]
    if gateway.search_in == "subject":
        return subject
    if gateway.search_in == "body":
        return body
    return f"{subject}\n{body}"


def claimed_pages(gateway: FaxGateway, number_match: re.Match[str], text: str) -> int | None:
    """The page count the gateway states: the number pattern's `pages` group, else the pages pattern's."""
    value = number_match.groupdict().get("pages")
    if value is None and (pattern := compiled(gateway.pages_pattern)) is not None:
        found = pattern.search(text)
        value = found.group("pages") if found else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def outbound_address(gateway: FaxGateway, number: str) -> str:
    """The gateway's email-to-fax address for an E.164 number, in the gateway's number format."""
    parsed = phonenumbers.parse(number, gateway.region)
    if gateway.number_format == "e164":
        digits = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    elif gateway.number_format == "national_digits":
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        digits = re.sub(r"\D", "", national)
    else:
        digits = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    return gateway.outbound_address.format(number=digits)
