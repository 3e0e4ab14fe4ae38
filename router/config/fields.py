"""What the deployment file's sections share: the value types their fields use, and
the error a section raises for one of its own fields.

Each section is a msgspec Struct that checks itself in `__post_init__`, next to its
definition; it knows its fields but not where it sits in the file, which msgspec
adds (`router.config.parse_deployment` puts the two together into one path).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from router.errors import ConfigError

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Name = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="a name (a letter or digit, then up to 62 of A-Z a-z 0-9 _ . -)",
    ),
]
E164 = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9]\d{6,14}$", description="an E.164 number")]
EnvName = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]*$", description="an environment variable name (A-Z, 0-9, _)")
]
Region = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$", description="a two-letter region such as US")]
HexColor = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$", description="a colour such as #1f6feb")]
# A web page's origin as browsers send it: scheme, host and an optional port, no path.
WebOrigin = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        description="an origin (https://host or https://host:port, no path)",
    ),
]

AccountSid = Annotated[
    str, msgspec.Meta(pattern=r"^AC[0-9a-fA-F]{32}$", description="a Twilio account SID (AC and 32 hex digits)")
]
ApiKeySid = Annotated[
    str, msgspec.Meta(pattern=r"^SK[0-9a-fA-F]{32}$", description="a Twilio API key SID (SK and 32 hex digits)")
]
MenuKey = Annotated[str, msgspec.Meta(pattern=r"^[0-9*#]$", description="one key of a phone: 0-9, * or #")]

# the repr of a pattern (as msgspec quotes it) -> what a value matching it is, for
# messages clearer than the regular expression
DESCRIPTIONS = {
    repr(meta.pattern): meta.description
    for meta in (
        t.__metadata__[0] for t in (Name, E164, EnvName, Region, HexColor, WebOrigin, AccountSid, ApiKeySid, MenuKey)
    )
}


class FieldError(ConfigError):
    """A section refuses one of its fields. `field` is the path inside the section
    ("" for the section as a whole); the message says what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}" if field else problem)
