"""The web chat's satisfaction survey: the widget shows a survey item (the question, from
the dispatcher: channels.webchat.outbound) with five rating buttons, and its tab answers
with a frame:

  {"type": "rating", "conversation", "rating": 1-5, "comment"?}   a rating (with a comment)
  {"type": "rating", "conversation", "comment"}                   a comment after the rating

The answer counts only for a conversation of the visitor's own customer (the visitor's
identity is checked against it in survey_answer.lua). Once recorded, a "rated" item joins
the visitor's transcript, so every open tab, and a reload, shows the survey answered; a
survey that cannot be answered any more gets an error frame (code "survey_closed").
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.webchat import transcript
from router import events, surveys
from router.config import Tenant
from router.customers import identity, normalise
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

ANSWERED = ("rated", "already", "commented")


def refusal(frame: dict[str, Any]) -> dict[str, Any] | None:
    """An error frame for a rating frame that is malformed, before it costs anything; None if well formed."""
    conversation, rating, words = frame.get("conversation"), frame.get("rating"), frame.get("comment", "")
    if not isinstance(conversation, str) or not conversation or len(conversation) > 64:
        return _error("bad_request", "a rating names its conversation")
    if not isinstance(words, str):
        return _error("bad_request", "a comment is text")
    if rating is not None and (type(rating) is not int or not 1 <= rating <= 5):
        return _error("bad_request", "a rating is a whole number from 1 to 5")
    if rating is None and not words.strip():
        return _error("bad_request", "a rating frame carries a rating or a comment")
    return None


async def answer(store: Store, tenant: Tenant, visitor: str, frame: dict[str, Any]) -> dict[str, Any] | None:
    """Record a tab's well-formed rating frame (see `refusal`). None when recorded: the "rated"
    item reaches every tab of the visitor through the transcript. Else the frame for this tab
    alone: an error, or, for a survey answered before (another tab, a second click), how it was."""
    conversation, rating, words = frame["conversation"], frame.get("rating"), frame.get("comment", "")
    if tenant.survey is None:
        return _error("survey_closed", "this survey is closed")
    ident = identity("webchat", normalise("webchat", visitor))
    try:
        if rating is not None:
            outcome, _counted = await surveys.rate(
                store, tenant, conversation, rating, channel="webchat", ident=ident, comment=words
            )
        else:
            outcome = await surveys.comment(store, tenant, conversation, words, channel="webchat", ident=ident)
    except surveys.SurveyError as exc:
        return _error("bad_request", str(exc))
    if outcome not in ANSWERED:
        log.info("web chat rating of %s for %s not recorded: %s", visitor, tenant.id, outcome)
        return _error("survey_closed", "this survey is closed", conversation=conversation)
    given, commented = await store.redis.hmget(
        Keys(tenant.id).conversation(conversation), "survey_rating", "survey_comment"
    )
    item = transcript.ChatItem(
        type="rated",
        id=events.new_id(),
        conversation=conversation,
        rating=int(given or 0),
        commented=bool(commented),
        at=events.now_ms(),
    )
    if outcome == "already":
        return json.loads(transcript.encode(item))
    await transcript.append(store, tenant.id, visitor, item)
    return None


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}
