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


async def answer(store: Store, tenant: Tenant, visitor: str, frame: dict[str, Any]) -> dict[str, Any] | None:
    """Record a tab's rating frame; an error frame for the tab, or None when recorded (the
    "rated" item reaches every tab of the visitor through the transcript)."""
    conversation, rating, words = frame.get("conversation"), frame.get("rating"), frame.get("comment", "")
    if not isinstance(conversation, str) or not conversation or len(conversation) > 64:
        return _error("bad_request", "a rating names its conversation")
    if not isinstance(words, str):
        return _error("bad_request", "a comment is text")
    if rating is not None and (type(rating) is not int or not 1 <= rating <= 5):
        return _error("bad_request", "a rating is a whole number from 1 to 5")
    if rating is None and not words.strip():
        return _error("bad_request", "a rating frame carries a rating or a comment")
    if tenant.survey is None:
        return _error("survey_closed", "this survey is closed")
    ident = identity("webchat", normalise("webchat", visitor))
    try:
        if rating is not None:
            outcome, counted = await surveys.rate(
                store, tenant, conversation, rating, channel="webchat", ident=ident, comment=words
            )
            commented = bool(words.strip()) and outcome == "rated"
        else:
            outcome = await surveys.comment(store, tenant, conversation, words, channel="webchat", ident=ident)
            counted, commented = 0, outcome in ("commented", "already")
    except surveys.SurveyError as exc:
        return _error("bad_request", str(exc))
    if outcome not in ANSWERED:
        log.info("web chat rating of %s for %s not recorded: %s", visitor, tenant.id, outcome)
        return _error("survey_closed", "this survey is closed", conversation=conversation)
    if not counted:
        record = await store.redis.hget(Keys(tenant.id).conversation(conversation), "survey_rating")
        counted = int(record or 0)
    item = transcript.ChatItem(
        type="rated",
        id=events.new_id(),
        conversation=conversation,
        rating=counted,
        commented=commented,
        at=events.now_ms(),
    )
    await transcript.append(store, tenant.id, visitor, item)
    return None


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}
