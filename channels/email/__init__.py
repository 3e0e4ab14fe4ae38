"""Email: an aiosmtpd server takes mail for the tenants' addresses and domains
(inbound), MIME read with the standard library (mime), text in the charsets senders
really mean, bodies and headers alike (charsets). Outbound: branded mail (compose)
with threading headers and tokens (threads) through the SMTP relay (delivery) or the
sandbox outbox (outbound); delivery reports mark messages failed (status); customers'
HTML made safe to show (sanitise); whose say-so counts, by the SMTP peer and our MX's
Authentication-Results (trust). Attachments live in the core's attachment store
(router/attachments.py). The smtp process (workers/smtp.py) lets the fax channel claim
its gateways' mail before this channel takes the rest."""

from channels.email.outbound import EmailSender

__all__ = ["EmailSender"]
