"""Email: an aiosmtpd server takes mail for the tenants' addresses and domains
(inbound), MIME read with the standard library (mime), attachments kept in a
content-addressed store (attachments). Outbound email has not landed yet."""

from __future__ import annotations

from channels.email.attachments import AttachmentStore
from channels.email.inbound import InboundHandler

__all__ = ["AttachmentStore", "InboundHandler"]
