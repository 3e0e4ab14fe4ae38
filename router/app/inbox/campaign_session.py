"""The desk's campaign session: the agent-paced campaigns an agent may work, Join and Leave,
and what they work on in each.

    GET  /inbox/campaign-session                                   the page
    POST /inbox/campaign-session/{tenant}/{campaign}/join|leave    in or out of its session
    POST /inbox/campaign-session/{tenant}/{campaign}/dial          preview: call the recipient read
    POST /inbox/campaign-session/{tenant}/{campaign}/skip          preview: skip them, with a reason

Joining puts the agent in the session and available (router.campaigns.session). In a
preview campaign the page shows the next recipient's record, the campaign's fields and the
script, with Dial and Skip (workers.campaigns.preview); in a progressive or predictive one
it shows the record and script of the campaign call the agent is on as it connects, and
the wrap-up timer after the close.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from aiohttp import web

from router import agents, events, names
from router.app.inbox import campaigns as campaign_pages
from router.app.inbox.access import tenant_of
from router.app.inbox.rendering import brand, read_form, render
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.campaigns import isolated, session
from router.campaigns.model import Campaign, CampaignError
from router.campaigns.render import TemplateProblem
from router.config import Tenant
from router.keys import Keys
from router.store import Store
from workers.campaigns import preview
from workers.campaigns.worker import CampaignWorker

log = logging.getLogger(__name__)

PATH = "/campaign-session/{tenant}/{campaign}"
DIALLER = web.AppKey("campaign_dialler", CampaignWorker)


async def page(request: web.Request, *, notice: str = "", error: str = "", status: int = 200) -> web.Response:
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    cards = []
    for tenant, agent in user.seats(deployment):
        for campaign, joined in await session.workable(store, tenant, agent):
            card: dict[str, object] = {
                "tenant": tenant, "brand": brand(tenant), "campaign": campaign, "joined": joined,
                "mode": campaign.voice.dial_mode,
            }
            if joined and campaign.voice.dial_mode == "preview":
                card["preview"] = await _preview_card(store, tenant, campaign, agent)
            elif joined:
                card["call"] = await _call_card(store, tenant, campaign, agent)
            cards.append(card)
    return render(
        request, "campaign_session.html", status=status, cards=cards, notice=notice, error=error,
        reasons=preview.SKIP_REASONS,
    )


async def _preview_card(store: Store, tenant: Tenant, campaign: Campaign, agent: str) -> dict[str, object] | None:
    previewed = await preview.current(store, tenant.id, campaign.id, agent)
    if previewed is None:
        return None
    recipient = previewed.recipient
    script, script_error = "", ""
    if campaign.voice.script:
        try:
            script = await isolated.shared().render_script(campaign, recipient)
        except TemplateProblem as exc:
            script_error = str(exc)
    fields = [(name.replace("_", " "), str(value)) for name, value in recipient.fields.items() if str(value).strip()]
    return {
        "seq": previewed.seq,
        "phone": recipient.phone,
        "name": recipient.fields.get("name", ""),
        "fields": fields,
        "script": script,
        "script_error": script_error,
    }


async def _call_card(store: Store, tenant: Tenant, campaign: Campaign, agent: str) -> dict[str, object] | None:
    """The agent's conversation of this campaign (on the call, or in wrap-up), if any."""
    for record in await agents.work(store, tenant, agent):
        if record.get("campaign") != campaign.id:
            continue
        panel = await campaign_pages.conversation_panel(store, tenant, record)
        wrap = await store.redis.zscore(Keys(tenant.id).timers, f"wrap:{agent}:{record['id']}")
        return {
            "conversation": record["id"],
            "customer": await names.of_conversation(store, tenant.id, record),
            "state": record.get("state", ""),
            "panel": panel,
            "wrap_until": dt.datetime.fromtimestamp(wrap / 1000, dt.UTC) if wrap else None,
            "wrap_ms": int(wrap) if wrap else 0,
        }
    return None


def _seat(request: web.Request) -> tuple[Tenant, str]:
    tenant = tenant_of(request, request.match_info["tenant"])
    agent = request[USER].agent_in(tenant.id)
    if not agent:
        raise web.HTTPNotFound()
    return tenant, agent


async def join(request: web.Request) -> web.Response:
    tenant, agent = _seat(request)
    try:
        campaign = await session.join(
            request.app[STORE], tenant, request.match_info["campaign"], agent, _now_ms()
        )
    except CampaignError as exc:
        return await page(request, error=f"You did not join: {exc}", status=409)
    log.info("agent %s of %s joined campaign %s", agent, tenant.id, campaign.id)
    raise web.HTTPSeeOther("/inbox/campaign-session")


async def leave(request: web.Request) -> web.Response:
    tenant, agent = _seat(request)
    await session.leave(request.app[STORE], tenant, request.match_info["campaign"], agent, _now_ms())
    raise web.HTTPSeeOther("/inbox/campaign-session")


async def dial(request: web.Request) -> web.Response:
    tenant, agent = _seat(request)
    form = await read_form(request)
    store, campaign = request.app[STORE], request.match_info["campaign"]
    try:
        status = await preview.dial(request.app[DIALLER], store, tenant.id, campaign, agent, _seq(form))
    except preview.PreviewError as exc:
        return await page(request, error=f"Not dialled: {exc}.", status=409)
    if status.startswith("sent:"):
        return await page(request, notice="Dialling: when the customer answers, the call is put through to you.")
    return await page(request, error=f"Not dialled: {_why(status, tenant)}", status=409)


async def skip(request: web.Request) -> web.Response:
    tenant, agent = _seat(request)
    form = await read_form(request)
    try:
        await preview.skip(
            request.app[STORE], tenant.id, request.match_info["campaign"], agent, _seq(form), form.get("reason", "")
        )
    except preview.PreviewError as exc:
        return await page(request, error=f"Not skipped: {exc}.", status=409)
    return await page(request, notice="Skipped. Here is the next recipient.")


def _seq(form: dict[str, str]) -> int:
    seq = form.get("recipient", "")
    if not seq.isdigit():
        raise web.HTTPBadRequest(text="the recipient is required")
    return int(seq)


def _why(status: str, tenant: Tenant) -> str:
    """The recipient's status after a Dial that placed nothing, in words."""
    kind, _, rest = status.partition(":")
    if kind == "later":
        when = dt.datetime.fromtimestamp(int(rest or 0) / 1000, ZoneInfo(tenant.timezone))
        return f"not allowed now (the calling hours or the contact caps); back on the list for {when:%a %d %b %H:%M}."
    reason = rest.rsplit(":", 1)[-1].replace("_", " ") if rest else kind
    return f"{reason} (the recipient is {kind})."


def _now_ms() -> int:
    return events.now_ms()


def routes(app: web.Application) -> None:
    app[DIALLER] = CampaignWorker(app[STORE], app[DEPLOYMENT], public_url=app[SETTINGS].base_url)
    app.router.add_get("/campaign-session", page)
    app.router.add_post(PATH + "/join", join)
    app.router.add_post(PATH + "/leave", leave)
    app.router.add_post(PATH + "/dial", dial)
    app.router.add_post(PATH + "/skip", skip)
