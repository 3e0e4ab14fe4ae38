"""Email: an aiosmtpd server takes mail for the tenants' addresses and domains
(inbound), MIME read with the standard library (mime), attachments kept in a
content-addressed store (attachments). Outbound: branded mail (compose) with
threading headers and tokens (threads) through the SMTP relay (delivery) or the
sandbox outbox (outbound); delivery reports mark messages failed (bounces);
customers' HTML made safe to show (sanitise); whose say-so counts, by the SMTP
peer and our MX's Authentication-Results (trust)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.email.attachments import AttachmentStore
    from channels.email.inbound import InboundHandler

__all__ = ["AttachmentStore", "InboundHandler"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the inbound handler reaches channels.fax, whose modules
    # use this package's submodules, so importing it here would make a cycle.
    if name == "AttachmentStore":
        from channels.email.attachments import AttachmentStore

        return AttachmentStore
    if name == "InboundHandler":
        from channels.email.inbound import InboundHandler

        return InboundHandler
    raise AttributeError(name)
