"""The second factor in the desk: enrolment, new recovery codes, and the policy's gate.

Enrolment shows a secret (a QR code of its otpauth:// URI, and the secret as text) and
turns it on only once a code from it is entered. The recovery codes are shown on the
page that answers that code, once. A login that policy requires to have a second factor
and has none can reach nothing but this page and logout until it has one (`gate`).
"""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from router import audit
from router.app.inbox import lockout, second_factor, sessions
from router.app.inbox.audit import tenants_of
from router.app.inbox.login import ENROL_PATH, client_address, landing
from router.app.inbox.rendering import read_form, render
from router.app.inbox.sessions import USER, Handler
from router.appkeys import DEPLOYMENT, STORE
from router.i18n import N_

log = logging.getLogger(__name__)

# What a login without its required second factor may reach.
OPEN_TO_UNENROLLED = {ENROL_PATH, f"{sessions.PREFIX}/logout"}
WRONG_CODE = N_("That code is not right. Enter the code your app shows now.")


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After the sessions middleware: a session of a login that must have a second factor
    and has none is sent to enrolment (a page) or refused (anything else)."""
    user = request.get(USER)
    if (
        user is None
        or user.second_factor
        or request.path in OPEN_TO_UNENROLLED
        or request.path.startswith(f"{sessions.PREFIX}/static/")
        or not second_factor.required(user, request.app[DEPLOYMENT])
    ):
        return await handler(request)
    if request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPSeeOther(ENROL_PATH)
    raise web.HTTPForbidden(text="set up your second factor first")


async def page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    store, user = request.app[STORE], request[USER]
    required = second_factor.required(user, request.app[DEPLOYMENT])
    if user.second_factor:
        left = await second_factor.recovery_codes_left(store, user.login)
        return render(request, "second_factor.html", status=status, error=error, required=required, left=left)
    secret = await second_factor.enrolment(store, user.login)
    uri = second_factor.provisioning_uri(secret, user.login)
    return render(
        request,
        "second_factor.html",
        status=status,
        error=error,
        required=required,
        uri=uri,
        qr=second_factor.qr_data_uri(uri),
        secret=second_factor.grouped(secret),
    )


async def confirm(request: web.Request) -> web.Response:
    """The code that turns the shown secret on; the answer shows the recovery codes, once."""
    store, user = request.app[STORE], request[USER]
    if user.second_factor:
        raise web.HTTPSeeOther(ENROL_PATH)
    form = await read_form(request)
    codes = await second_factor.confirm(store, user.login, form.get("code", "")[:64])
    if codes is None:
        return await page(request, WRONG_CODE, status=400)
    log.info("inbox: %s turned a second factor on", user.login)
    await audit.record(
        store, "second_factor_on", actor=user.login, client=client_address(request), tenants=tenants_of(user)
    )
    return render(
        request,
        "recovery_codes.html",
        codes=codes,
        next=landing(request, msgspec.structs.replace(user, second_factor=True)),
    )


async def recovery_codes(request: web.Request) -> web.Response:
    """New recovery codes for a current code (counted as a login's codes are: a stolen
    session cannot guess its way to them)."""
    store, user = request.app[STORE], request[USER]
    if not user.second_factor:
        raise web.HTTPSeeOther(ENROL_PATH)
    form = await read_form(request)
    attempt, counted = await lockout.count_code(store, user.login, client_address(request))
    judged = counted.locked_until <= attempt.at and counted.codes <= lockout.CODE_MAX_FAILURES
    if judged and await second_factor.verify(store, user.login, form.get("code", "")[:64]):
        await lockout.code_succeeded(store, attempt)
        codes = await second_factor.new_recovery_codes(store, user.login)
        log.info("inbox: %s made new recovery codes", user.login)
        await audit.record(
            store, "recovery_codes", actor=user.login, client=client_address(request), tenants=tenants_of(user)
        )
        return render(request, "recovery_codes.html", codes=codes, next=landing(request, user))
    if counted.locked_until > attempt.at:
        await lockout.code_refused(store, attempt)
    else:
        await lockout.code_failed(store, attempt, counted)
    return await page(request, WRONG_CODE, status=400)


def routes(app: web.Application) -> None:
    app.router.add_get("/second-factor", page)
    app.router.add_post("/second-factor", confirm)
    app.router.add_post("/second-factor/recovery-codes", recovery_codes)
