"""The ids of a campaign's messages and conversations, and of its A/B variants' stats
fields: made by the worker when it sends, read back by the results from events.

A recipient's conversation is cmp-<campaign>-<seq>; each attempt to reach them is the
message cmp-<campaign>-<seq>-<attempt>, so the same attempt is always the same message
(dispatch sends an id once).
"""

from __future__ import annotations


def message_id(campaign: str, seq: int, attempt: int) -> str:
    """The same recipient and attempt always make the same message: dispatch sends an id once."""
    return f"cmp-{campaign}-{seq}-{attempt}"


def variant_prefix(variant: str) -> str:
    """The stats fields of an A/B variant start with this ("" for none)."""
    return f"v:{variant}:" if variant else ""


def conversation_id(campaign: str, seq: int) -> str:
    return f"cmp-{campaign}-{seq}"


def parse_message_id(message: str) -> tuple[str, int, int] | None:
    """(campaign, recipient, attempt) of a campaign message id, else None."""
    if not message.startswith("cmp-"):
        return None
    parts = message[4:].rsplit("-", 2)
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None


def parse_conversation_id(conversation: str) -> tuple[str, int] | None:
    """(campaign, recipient) of a campaign conversation id, else None."""
    if not conversation.startswith("cmp-"):
        return None
    campaign, _, seq = conversation[4:].rpartition("-")
    return (campaign, int(seq)) if campaign and seq.isdigit() else None
