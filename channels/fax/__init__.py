"""Fax through fax-to-email gateways: a gateway's mail to a tenant's address is a
received fax (inbound) or a report on a fax we sent (status); a reply is rendered
to a PDF (render) and mailed to the gateway's email-to-fax address (outbound).
Recognising a gateway and reading its mail's patterns is in gateways; the page
count of a PDF or TIFF in pages."""

from channels.fax.outbound import FaxSender

__all__ = ["FaxSender"]
