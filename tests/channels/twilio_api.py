"""A local stand-in for Twilio's Messages, Calls, call Recordings and conference
Participants resources, for tests that drive the real twilio client: it records every
request it receives and answers as Twilio does, 201 with the created message, call,
recording or participant (200 with one updated, 204 for one deleted), or an error when
a test asks for one.

    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url)
        api.answer(429, 20429, "Too Many Requests")  # the next request; then 201 again
        api.media["/2010-04-01/Accounts/AC.../Recordings/RE1.mp3"] = ("audio/mpeg", b"ID3...")  # GET serves it
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web
from multidict import MultiDict

from tests.channels import fake_server


@dataclass
class Received:
    """One request as the server got it."""

    method: str
    path: str
    account_sid: str  # from the path
    auth: tuple[str, str]  # HTTP basic auth: (user, password)
    form: MultiDict[str]

    def __getitem__(self, name: str) -> str:
        return self.form[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.form.get(name, default)


@dataclass
class _Answer:
    status: int
    code: int | None = None
    message: str = ""
    delay: float = 0.0  # seconds to wait first (a slow or hung Twilio)


@dataclass
class TwilioApi:
    requests: list[Received] = field(default_factory=list)
    sids: list[str] = field(default_factory=list)  # of the messages created, in order
    call_sids: list[str] = field(default_factory=list)  # of the calls created, in order
    recording_sids: list[str] = field(default_factory=list)  # of the call recordings started, in order
    participant_sids: list[str] = field(default_factory=list)  # CallSids of the participants added, in order
    url: str = ""
    received: asyncio.Event = field(default_factory=asyncio.Event)  # set once a request arrived
    # Files served on GET (recordings, MMS media): path -> (content type, bytes), or a
    # path -> "redirect:<url>" to send the client on, as Twilio does to its storage.
    media: dict[str, tuple[str, bytes] | str] = field(default_factory=dict)
    _answers: list[_Answer] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def answer(self, status: int, code: int | None = None, message: str = "", *, delay: float = 0.0) -> None:
        """Queue the answer to the next request not yet answered (201: a created message)."""
        self._answers.append(_Answer(status, code, message, delay))

    async def __aenter__(self) -> TwilioApi:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create_message)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls.json", self._create_call)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{sid}.json", self._update_call)
        app.router.add_post(
            "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{sid}.json", self._update_participant
        )
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}/Recordings.json", self._create_recording)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{sid}.json", self._update_recording)
        app.router.add_delete("/2010-04-01/Accounts/{account}/Recordings/{sid}.json", self._deleted)
        app.router.add_post(
            "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants.json", self._add_participant
        )
        app.router.add_delete(
            "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{sid}.json", self._deleted
        )
        app.router.add_get("/{path:.+}", self._get_media)
        self._runner, self.url = await fake_server.start(app)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> tuple[MultiDict[str], web.Response | None]:
        """Record a request and wait as told; the error to answer with, if any."""
        form = MultiDict(await request.post())
        account = request.match_info["account"]
        self.requests.append(Received(request.method, request.path, account, _basic_auth(request), form))
        self.received.set()
        answer = self._answers.pop(0) if self._answers else _Answer(201)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.status == 201:
            return form, None
        error = {
            "code": answer.code,
            "message": answer.message,
            "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
            "status": answer.status,
        }
        return form, web.json_response(error, status=answer.status)

    async def _create_call(self, request: web.Request) -> web.Response:
        form, error = await self._receive(request)
        if error is not None:
            return error
        account = request.match_info["account"]
        sid = "CA" + secrets.token_hex(16)
        self.call_sids.append(sid)
        now = formatdate(usegmt=True)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account,
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "direction": "outbound-api",
                "from": form.get("From"),
                "from_formatted": form.get("From"),
                "to": form.get("To"),
                "to_formatted": form.get("To"),
                "parent_call_sid": None,
                "status": "queued",
                "start_time": None,
                "end_time": None,
                "duration": None,
                "price": None,
                "price_unit": "USD",
                "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
            },
            status=201,
        )

    async def _update_call(self, request: web.Request) -> web.Response:
        """A live call redirected (Url) or ended (Status): answered with the call."""
        form, error = await self._receive(request)
        if error is not None:
            return error
        account, sid = request.match_info["account"], request.match_info["sid"]
        now = formatdate(usegmt=True)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account,
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "direction": "inbound",
                "status": form.get("Status", "in-progress"),
                "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
            }
        )

    async def _update_participant(self, request: web.Request) -> web.Response:
        """A conference participant held, muted or changed: answered with the participant."""
        form, error = await self._receive(request)
        if error is not None:
            return error
        account, conference, sid = (request.match_info[k] for k in ("account", "conference", "sid"))
        now = formatdate(usegmt=True)
        return web.json_response(
            {
                "account_sid": account,
                "call_sid": sid,
                "conference_sid": conference,
                "date_created": now,
                "date_updated": now,
                "hold": form.get("Hold") == "true",
                "muted": form.get("Muted") == "true",
                "status": "connected",
                "uri": f"/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{sid}.json",
            }
        )

    def _recording(self, request: web.Request, sid: str, form: MultiDict[str], status: str) -> dict[str, object]:
        account, call = request.match_info["account"], request.match_info["call"]
        now = formatdate(usegmt=True)
        return {
            "sid": sid,
            "account_sid": account,
            "call_sid": call,
            "conference_sid": None,
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "start_time": now,
            "duration": "-1",
            "channels": 2 if form.get("RecordingChannels") == "dual" else 1,
            "source": "StartCallRecordingAPI",
            "status": status,
            "track": form.get("RecordingTrack", "both"),
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{sid}.json",
        }

    async def _create_recording(self, request: web.Request) -> web.Response:
        form, error = await self._receive(request)
        if error is not None:
            return error
        sid = "RE" + secrets.token_hex(16)
        self.recording_sids.append(sid)
        return web.json_response(self._recording(request, sid, form, "in-progress"), status=201)

    async def _update_recording(self, request: web.Request) -> web.Response:
        """A recording paused or resumed (Status)."""
        form, error = await self._receive(request)
        if error is not None:
            return error
        return web.json_response(self._recording(request, request.match_info["sid"], form, form.get("Status", "")))

    async def _deleted(self, request: web.Request) -> web.Response:
        """A recording deleted, a participant removed: 204, no body."""
        _form, error = await self._receive(request)
        return error if error is not None else web.Response(status=204)

    async def _add_participant(self, request: web.Request) -> web.Response:
        """A call placed into a conference (a supervisor, a colleague): the participant."""
        form, error = await self._receive(request)
        if error is not None:
            return error
        account, conference = request.match_info["account"], request.match_info["conference"]
        sid = "CA" + secrets.token_hex(16)
        self.participant_sids.append(sid)
        now = formatdate(usegmt=True)
        body = {
            "account_sid": account,
            "call_sid": sid,
            "conference_sid": conference,
            "date_created": now,
            "date_updated": now,
            "label": form.get("Label"),
            "hold": False,
            "muted": form.get("Muted") == "true",
            "coaching": form.get("Coaching") == "true",
            "call_sid_to_coach": form.get("CallSidToCoach"),
            "status": "queued",
            "uri": f"/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{sid}.json",
        }
        return web.json_response(body, status=201)

    async def _create_message(self, request: web.Request) -> web.Response:
        form, error = await self._receive(request)
        if error is not None:
            return error
        account = request.match_info["account"]
        sid = "SM" + secrets.token_hex(16)
        self.sids.append(sid)
        body = form.get("Body", "")
        now = formatdate(usegmt=True)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_updated": now,
                "date_sent": None,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": str(len(form.getall("MediaUrl", []))),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "status": "queued" if "From" in form else "accepted",
                "to": form.get("To"),
                "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
                "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
            },
            status=201,
        )

    async def _get_media(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        account = parts[3] if len(parts) > 3 and parts[2] == "Accounts" else ""
        self.requests.append(Received(request.method, request.path, account, _basic_auth(request), MultiDict()))
        self.received.set()
        served = self.media.get(request.path)
        if served is None:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        if isinstance(served, str):
            raise web.HTTPFound(served.removeprefix("redirect:"))
        content_type, body = served
        return web.Response(body=body, content_type=content_type)


def _basic_auth(request: web.Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password
