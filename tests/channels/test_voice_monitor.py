"""Supervisors on a live call, from the floor: listen (a muted participant), whisper
(coaching the agent's leg) and barge (unmuted), each a change of conference participants
on the fake Twilio REST server; the agent is shown who is on the call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientSession, CookieJar

from channels.voice import bridge, monitor
from router import audit
from router.app.inbox import accounts, second_factor
from tests.channels.test_voice_softphone import ENV, WITH_KEY, Desk, desk_of
from tests.channels.voice_phone import ACME_NUMBER, ACME_SID, AMY_PHONE
from tests.router.test_inbox_pages import PASSWORD, SECRET, cheap_hashes, csrf_of, log_in  # noqa: F401 - fixture

ROOM = "CF" + "3" * 32  # the conference Desk.call_with reports


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(WITH_KEY, ENV):
        yield value


async def supervisor(desk: Desk, seat: str = "amy") -> tuple[ClientSession, str]:
    """sue, a supervisor of acme whose seat there is `seat` (amy has a phone)."""
    await accounts.add(desk.world.store, "sue", PASSWORD, "supervisor", {"acme": seat})
    await second_factor.activate(desk.world.store, "sue", SECRET)
    sue = ClientSession(base_url=str(desk.phone.client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
    await log_in(sue, "sue")
    return sue, csrf_of(await (await sue.get("/inbox")).text())


def participants(desk: Desk) -> list:
    return [r for r in desk.api.requests[desk.since :] if "/Participants" in r.path]


async def test_listen_whisper_barge_and_leave_are_participant_changes_and_the_agent_sees_who(desk):
    conversation = await desk.call_with("zoe")
    agent_leg = (await desk.phone.call_record())["agent_leg"]
    sue, token = await supervisor(desk)
    zoe, _ = await desk.agent("zoe")
    url = f"/inbox/t/acme/c/{conversation}/monitor"
    async with sue, zoe:
        floor = await (await sue.get("/inbox/floor")).text()
        assert url in floor and 'value="whisper"' in floor  # the floor offers the live call
        for mode in ("listen", "whisper", "barge"):
            response = await sue.post(url, data={"mode": mode, "csrf": token}, allow_redirects=False)
            assert response.status == 303, await response.text()
        [sid] = desk.api.participant_sids
        page = await (await zoe.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "sue (speaking, joining)" in page
        # Twilio reports the supervisor's leg joined (on the URL the conference's first participant gave)
        events_url = bridge.CONFERENCE_PATH.format(tenant="acme") + f"?conversation={conversation}&role=agent"
        joined = {
            "AccountSid": ACME_SID,
            "ConferenceSid": ROOM,
            "CallSid": sid,
            "StatusCallbackEvent": "participant-join",
        }
        assert (await desk.phone.post(events_url, joined)).status == 200
        live = await (await zoe.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json()
        assert live["listeners"] == "sue (speaking)"
        call = await (await zoe.get(f"/inbox/t/acme/c/{conversation}/call.json")).json()  # the softphone's
        assert (call["live"], call["listeners"], call["recording"]) == (True, "sue (speaking)", "")
        left = await sue.post(url, data={"mode": "leave", "csrf": token}, allow_redirects=False)
        assert left.status == 303
        live = await (await zoe.get(f"/inbox/t/acme/c/{conversation}/messages.json")).json()
        assert live["listeners"] == ""
    entries, _ = await audit.read(desk.world.store, tenant="acme", action="call_monitored")
    assert [(e.actor, e.target, e.detail) for _id, e in reversed(entries)] == [
        ("sue", f"conversation {conversation}", mode) for mode in ("listen", "whisper", "barge")
    ]
    add, whisper, barge, remove = participants(desk)
    assert add.path == f"/2010-04-01/Accounts/{ACME_SID}/Conferences/{ROOM}/Participants.json"
    assert (add["To"], add["From"], add["Label"]) == (AMY_PHONE, ACME_NUMBER, "supervisor-sue")
    assert (add["Muted"], add["Coaching"], add["EndConferenceOnExit"], add["Beep"]) == (
        "true",
        "false",
        "false",
        "false",
    )
    assert urlsplit(add["ConferenceStatusCallback"]).path == bridge.CONFERENCE_PATH.format(tenant="acme")
    assert whisper.path.endswith(f"/Participants/{sid}.json")
    assert (whisper["Muted"], whisper["Coaching"], whisper["CallSidToCoach"]) == ("false", "true", agent_leg)
    assert (barge["Muted"], barge["Coaching"], barge.get("CallSidToCoach")) == ("false", "false", None)
    assert (remove.method, remove.path) == (
        "DELETE",
        f"/2010-04-01/Accounts/{ACME_SID}/Conferences/{ROOM}/Participants/{sid}.json",
    )


async def test_only_a_supervisor_joins_and_only_a_live_call(desk):
    sue, token = await supervisor(desk)
    zoe, zoe_token = await desk.agent("zoe")
    conversation = await desk.call_with("zoe")
    waiting = await desk.world.arrive(address="+12015550000", channel="sms", queue="billing")
    async with sue, zoe:
        refused = await sue.post(f"/inbox/t/acme/c/{waiting}/monitor", data={"mode": "listen", "csrf": token})
        assert refused.status == 409
        assert "no call in progress" in await refused.text()
        as_agent = await zoe.post(f"/inbox/t/acme/c/{conversation}/monitor", data={"mode": "listen", "csrf": zoe_token})
        assert as_agent.status in (403, 404)
        bad = await sue.post(f"/inbox/t/acme/c/{conversation}/monitor", data={"mode": "shout", "csrf": token})
        assert bad.status == 400
    gus, _ = await desk.agent("gus", "globex")
    async with gus:  # another tenant's agent learns nothing of the call
        assert (await gus.get(f"/inbox/t/acme/c/{conversation}/call.json")).status == 404
        assert (await gus.get(f"/inbox/t/globex/c/{conversation}/call.json")).status == 404
    assert participants(desk) == []


async def test_a_supervisor_without_a_phone_or_softphone_seat_is_told_why(desk):
    conversation = await desk.call_with("zoe")
    sue, token = await supervisor(desk, seat="")
    async with sue:
        response = await sue.post(f"/inbox/t/acme/c/{conversation}/monitor", data={"mode": "listen", "csrf": token})
        assert response.status == 409
        assert "agent seat" in await response.text()
    assert participants(desk) == []
    assert await monitor.listeners(desk.world.store, "acme", conversation) == []
