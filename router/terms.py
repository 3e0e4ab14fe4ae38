"""The product's words for its own states, channels, presences and roles, as a page shows
them: the stored values stay English identifiers, and a page writes `term(value)` (a global
of router.templating.pages) to show one in the reader's language. A value not listed here
is shown as stored."""

from __future__ import annotations

from router.i18n import N_

TERMS: dict[str, str] = {
    # conversation states (router/conversations.py, the desk's list filters)
    "queued": N_("queued"),
    "reserved": N_("reserved"),
    "assigned": N_("assigned"),
    "wrap-up": N_("wrap-up"),
    "wrapup": N_("wrap-up"),
    "closed": N_("closed"),
    "open": N_("open"),
    # kinds of contact
    "message": N_("message"),
    "call": N_("call"),
    "callback": N_("callback"),
    "voicemail": N_("voicemail"),
    # a reply's delivery (events.DeliveryStatus; "queued" above)
    "sending": N_("sending"),
    "sent": N_("sent"),
    "delivered": N_("delivered"),
    "failed": N_("failed"),
    "refused": N_("refused"),
    "unknown": N_("unknown"),
    # agents' presence
    "available": N_("available"),
    "away": N_("away"),
    "offline": N_("offline"),
    "busy": N_("busy"),
    # logins' roles
    "agent": N_("agent"),
    "supervisor": N_("supervisor"),
    "admin": N_("admin"),
    # channels
    "sms": N_("SMS"),
    "voice": N_("voice"),
    "email": N_("email"),
    "fax": N_("fax"),
    "webchat": N_("web chat"),
    "telegram": N_("Telegram"),
    "phone": N_("phone"),
    # the short labels the desk shows for a channel in place of an icon (inbox/listing.py)
    "SMS": N_("SMS"),
    "Call": N_("Call"),
    "Email": N_("Email"),
    "Fax": N_("Fax"),
    "Chat": N_("Chat"),
}
