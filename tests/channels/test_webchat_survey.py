"""The web chat's survey over the socket: the survey item reaches the visitor's tab, a
rating frame counts once and only for the visitor's own conversation, and every tab (and
a reconnect) sees it answered."""

from __future__ import annotations

from router import agents, events
from tests.channels.test_webchat_socket import (
    chat_server,
    chat_world,
    dispatch_all,
    frame,
    open_chat,
    route_all,
    say,
)

SURVEY = '\n[tenants.survey]\nchannels = ["webchat"]\n'  # after the chat's own fields


async def test_a_rating_frame_counts_once_for_the_visitors_own_conversation_only() -> None:
    w = await chat_world(extra=SURVEY)
    await w.available("amy")
    async with chat_server(w) as client:
        ws, welcome = await open_chat(client)
        assert (await say(ws, "My bill is wrong"))["type"] == "ack"
        await route_all(w)
        conversation = await w.accept_offer("amy")
        await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
        await w.fire("survey:")
        await dispatch_all(w)
        survey = await frame(ws, "survey")
        assert (survey["conversation"], survey["kind"]) == (conversation, "out")
        assert "1 (poor) to 5 (excellent)" in survey["text"]

        # another visitor cannot rate it, whatever they send
        other, _ = await open_chat(client)
        await other.send_json({"type": "rating", "conversation": conversation, "rating": 1})
        refused = await frame(other, "error")
        assert (refused["code"], refused["conversation"]) == ("survey_closed", conversation)
        for bad in ({"rating": 6}, {"rating": "5"}, {"rating": True}, {}, {"conversation": 7, "rating": 2}):
            await ws.send_json({"type": "rating", "conversation": conversation, **bad})
            assert (await frame(ws, "error"))["code"] == "bad_request"
        assert "survey_rating" not in await w.conversation(conversation)

        second_tab, _ = await open_chat(client, token=welcome["token"])
        await ws.send_json({"type": "rating", "conversation": conversation, "rating": 5})
        rated = await frame(ws, "rated")
        assert (rated["conversation"], rated["rating"], rated.get("commented", False)) == (conversation, 5, False)
        assert (await frame(second_tab, "rated"))["rating"] == 5
        await ws.send_json({"type": "rating", "conversation": conversation, "rating": 1})  # a second click
        assert (await frame(ws, "rated"))["rating"] == 5
        await ws.send_json({"type": "rating", "conversation": conversation, "comment": "Lovely"})
        assert (await frame(ws, "rated")).get("commented") is True
        record = await w.conversation(conversation)
        assert (record["survey_rating"], record["survey_comment"]) == ("5", "Lovely")
        assert [(e.rating, e.comment) for e in await w.events(events.SurveyResult)] == [(5, ""), (5, "Lovely")]

        _again, replayed = await open_chat(client, token=welcome["token"])  # a reload
        assert [item["type"] for item in replayed["history"]] == ["message", "survey", "rated", "rated"]
