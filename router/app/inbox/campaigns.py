"""Outbound campaigns in the inbox, for supervisors and admins: every campaign of their
tenants with its live progress, a campaign's page (A/B variants, the import's rejected
rows, a preview of the first recipients' messages, launch/pause/resume/cancel), and the
campaign panel an agent sees on a reply's conversation.

    GET  /inbox/campaigns                                   the list, per tenant
    GET  /inbox/campaigns.json                              its figures, for the page's script
    GET  /inbox/campaigns/{tenant}/{campaign}               one campaign
    GET  /inbox/campaigns/{tenant}/{campaign}/progress.json its figures
    GET  /inbox/campaigns/{tenant}/{campaign}/recipients.csv every recipient's results (audited)
    POST /inbox/campaigns/{tenant}/{campaign}/{action}      launch | pause | resume | cancel

Every action is router.campaigns.registry's own, the one the CLI calls, so the web and
the CLI cannot disagree on what a state allows. A tenant the user is no member of, or a
campaign it does not have, is 404.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math

from aiohttp import web

from router import audit, events
from router.app.inbox.access import tenant_of
from router.app.inbox.login import client_address
from router.app.inbox.rendering import brand, render
from router.app.inbox.sessions import USER, require_role
from router.appkeys import DEPLOYMENT, STORE
from router.campaigns import dial_state, isolated, registry
from router.campaigns.dialing import ABANDON_LIMIT
from router.campaigns.model import (
    DISPOSITIONS,
    Campaign,
    CampaignError,
    check_against,
    decode_recipient,
    missing_dispositions,
)
from router.campaigns.render import Rendered, TemplateProblem
from router.config import Deployment, Tenant
from router.keys import Keys
from router.store import Store
from workers.campaigns import agent_figures, export
from workers.campaigns.audience import address_for

log = logging.getLogger(__name__)

SHOWN_REJECTS = 20  # as the CLI's import: the rest are a `campaign rejects` away
PREVIEWS = 3
# The counters beside each bar: what is left, then what happened to what was sent.
BAR = ("queued", "sent", "delivered", "failed", "suppressed", "replied", "converted")
MORE = ("imported", "rejected", "skipped", "retried", "rescheduled", "refused_at_send")
VARIANT_COUNTS = ("sent", "delivered", "failed", "suppressed", "replied", "converted")
CAMPAIGN_PATH = "/campaigns/{tenant}/{campaign:[a-z0-9][a-z0-9_-]{0,62}}"


def actions_from(state: str) -> list[str]:
    """The actions a campaign in this state allows, in the registry's order."""
    return [action for action, (starts, _target) in registry.TRANSITIONS.items() if state in starts]


def progress_view(progress: registry.Progress) -> dict[str, object]:
    """A campaign's figures as the pages and their JSON show them."""
    return {
        "tenant": progress.tenant,
        "campaign": progress.campaign,
        "state": progress.state,
        "counts": {**progress.counts, "queued": progress.queued},
        "done": progress.done,
        "total": progress.done + progress.queued,
        "percent": math.floor(progress.share * 100),  # never 100 % while anyone is still queued
        "actions": actions_from(progress.state),
        "variants": progress.variants,
        "dispositions": dict(sorted(progress.dispositions.items())),
    }


async def _tenant_campaigns(store: Store, tenant: Tenant) -> list[dict[str, object]]:
    rows = []
    for campaign_id in await registry.ids(store, tenant.id):
        try:
            campaign, _state = await registry.load(store, tenant.id, campaign_id)
            progress = await registry.progress(store, tenant.id, campaign_id)
        except CampaignError:  # removed between the two reads
            continue
        rows.append(
            {
                **progress_view(progress),
                "name": campaign.name or campaign.id,
                "kind": campaign.kind,
                "channel": campaign.channel,
                "fallback_channel": campaign.fallback_channel or "",
            }
        )
    return rows


async def _visible(request: web.Request) -> list[dict[str, object]]:
    """The user's tenants, each with its campaigns."""
    store, deployment = request.app[STORE], request.app[DEPLOYMENT]
    result = []
    for tenant_id in request[USER].tenants(deployment):
        tenant = deployment.tenant(tenant_id)
        result.append(
            {
                "tenant": tenant.id,
                "name": tenant.name or tenant.id,
                "brand": brand(tenant),
                "campaigns": await _tenant_campaigns(store, tenant),
            }
        )
    return result


@require_role("supervisor", "admin")
async def campaigns_page(request: web.Request) -> web.Response:
    return render(request, "campaigns.html", tenants=await _visible(request), bar=BAR)


@require_role("supervisor", "admin")
async def campaigns_json(request: web.Request) -> web.Response:
    store, deployment = request.app[STORE], request.app[DEPLOYMENT]
    campaigns = []
    for tenant_id in request[USER].tenants(deployment):
        campaigns += await _tenant_campaigns(store, deployment.tenant(tenant_id))
    return web.json_response({"now": events.now_ms(), "campaigns": campaigns})


async def _campaign_of(request: web.Request) -> tuple[Tenant, Campaign]:
    """The tenant (404 unless the user is a member) and its campaign (404 if it has none)."""
    tenant = tenant_of(request, request.match_info["tenant"])
    try:
        campaign, _state = await registry.load(request.app[STORE], tenant.id, request.match_info["campaign"])
    except CampaignError:
        raise web.HTTPNotFound() from None
    return tenant, campaign


def _preview_view(campaign: Campaign, rows: list) -> list[dict[str, str]]:
    shown = []
    for recipient, channel, result in rows:
        rendered = result if isinstance(result, Rendered) else None
        shown.append(
            {
                "line": str(recipient.line),
                "channel": channel,
                "address": address_for(channel, recipient) or recipient.phone,  # the machine row: the phone
                "variant": campaign.variant_of(recipient.seq),
                "subject": rendered.subject if rendered else "",
                "body": rendered.body if rendered else "",
                "error": "" if rendered else str(result),
            }
        )
    return shown


async def _detail(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    tenant, campaign = await _campaign_of(request)
    store = request.app[STORE]
    progress = await registry.progress(store, tenant.id, campaign.id)
    recipients = await registry.first_recipients(store, tenant.id, campaign.id, PREVIEWS)
    view = progress_view(progress)
    variants = [
        {
            "name": v.name,
            "share": v.share,
            "counts": {k: progress.variants.get(v.name, {}).get(k, 0) for k in VARIANT_COUNTS},
        }
        for v in campaign.variants
    ]
    names_of = {a.id: a.name or a.id for a in tenant.agents}  # a person is shown by name
    dialler = None
    if campaign.voice.dial_mode != "message":  # agents on the line: the dialler's figures
        dialler = await dial_state.summary(store, tenant.id, campaign.id, dt.datetime.now(dt.UTC))
    return render(
        request,
        "campaign.html",
        dialler=dialler,
        per_agent=[
            {"name": names_of.get(a.agent, a.agent), "figures": a}
            for a in await agent_figures.per_agent(store, tenant.id, campaign.id)
        ],
        abandon_limit=ABANDON_LIMIT,
        status=status,
        error=error,
        tenant=tenant,
        brand=brand(tenant),
        campaign=campaign,
        progress=view,
        bar=BAR,
        more=MORE,
        variant_counts=VARIANT_COUNTS,
        variants=variants,
        rejects=(await registry.rejects(store, tenant.id, campaign.id))[:SHOWN_REJECTS],
        # in the bounded child process: a runaway template never holds this loop
        previews=_preview_view(campaign, await isolated.shared().preview(campaign, recipients)),
        missing=missing_dispositions(campaign, request.app[DEPLOYMENT]),
        launch_problem=_launch_problem(campaign, request.app[DEPLOYMENT]),
        window=campaign.effective_window(),
    )


def _launch_problem(campaign: Campaign, deployment: Deployment) -> str:
    """What a launch would refuse, said before anyone presses Launch ("" for nothing)."""
    try:
        check_against(campaign, deployment)
    except CampaignError as exc:
        return str(exc)
    return ""


@require_role("supervisor", "admin")
async def campaign_page(request: web.Request) -> web.Response:
    return await _detail(request)


@require_role("supervisor", "admin")
async def campaign_json(request: web.Request) -> web.Response:
    tenant, campaign = await _campaign_of(request)
    progress = await registry.progress(request.app[STORE], tenant.id, campaign.id)
    return web.json_response({"now": events.now_ms(), "campaigns": [progress_view(progress)]})


@require_role("supervisor", "admin")
async def act(request: web.Request) -> web.Response:
    """Launch, pause, resume or cancel, exactly as `contactrouter campaign ACTION` does."""
    tenant, campaign = await _campaign_of(request)
    action = request.match_info["action"]
    try:
        state = await registry.change(
            request.app[STORE], tenant.id, campaign.id, action, deployment=request.app[DEPLOYMENT]
        )
    except CampaignError as exc:  # e.g. pausing a campaign someone else just paused
        return await _detail(request, error=str(exc), status=409)
    log.info("campaign %s of %s: %s by %s, now %s", campaign.id, tenant.id, action, request[USER].login, state)
    raise web.HTTPSeeOther(f"/inbox/campaigns/{tenant.id}/{campaign.id}?done=campaign_{action}")


@require_role("supervisor", "admin")
async def recipients_csv(request: web.Request) -> web.StreamResponse:
    """Every recipient's results as CSV (workers/campaigns/export.py), streamed a chunk of
    recipients at a time; an export of personal data, so audited first, as the CLI's is."""
    tenant, campaign = await _campaign_of(request)
    store = request.app[STORE]
    await audit.record(
        store,
        "export",
        actor=request[USER].login,
        client=client_address(request),
        tenants=(tenant.id,),
        target=f"campaign {campaign.id} recipients",
        detail="csv",
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            # the campaign id matches CAMPAIGN_PATH's pattern: nothing to escape in the name
            "Content-Disposition": f'attachment; filename="campaign-{tenant.id}-{campaign.id}-recipients.csv"',
        }
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(export.csv_header())
    count = 0
    async for row in export.rows(store, tenant.id, campaign.id):
        writer.writerow(export.csv_row(row))
        count += 1
        if count % export.CHUNK == 0:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


async def conversation_panel(store: Store, tenant: Tenant, record: dict[str, str]) -> dict[str, object] | None:
    """What the agent sees of the campaign a conversation answers: its name and kind, the
    recipient's fields from the audience file (balance, due date, offer...), and the kind's
    dispositions the tenant lets agents record. None for a conversation of no campaign."""
    campaign_id = record.get("campaign", "")
    if not campaign_id:
        return None
    try:
        context = json.loads(record.get("campaign_context") or "{}")
    except ValueError:
        log.warning("conversation %s of %s: campaign context is not JSON", record.get("id"), tenant.id)
        context = {}
    fields = [
        (str(name).replace("_", " "), str(value))
        for name, value in (context.items() if isinstance(context, dict) else ())
        if str(value).strip()
    ]
    try:
        campaign, state = await registry.load(store, tenant.id, campaign_id)
    except CampaignError:  # the conversation outlives its campaign: keep the context
        campaign, state = None, ""
    kind = campaign.kind if campaign else ""
    script, script_error = await _script(store, campaign, record.get("campaign_recipient", ""))
    return {
        "script": script,
        "script_error": script_error,
        "id": campaign_id,
        "name": (campaign.name if campaign else "") or campaign_id,
        "kind": kind,
        "state": state,
        "recipient": record.get("campaign_recipient", ""),
        "fields": fields,
        "dispositions": [d for d in DISPOSITIONS.get(kind, ()) if d in tenant.dispositions],
    }


async def _script(store: Store, campaign: Campaign | None, seq: str) -> tuple[str, str]:
    """The campaign's agent script rendered for the recipient, or why it could not be
    (in the bounded child: the web process's loop never runs a template)."""
    if campaign is None or not campaign.voice.script or not seq:
        return "", ""
    blob = await store.redis.hget(Keys(campaign.tenant).campaign_audience(campaign.id), seq)
    if not blob:
        return "", ""
    try:
        return await isolated.shared().render_script(campaign, decode_recipient(blob)), ""
    except TemplateProblem as exc:
        log.warning("campaign %s recipient %s: script not rendered: %s", campaign.id, seq, exc)
        return "", str(exc)


def routes(app: web.Application) -> None:
    add = app.router
    add.add_get("/campaigns", campaigns_page)
    add.add_get("/campaigns.json", campaigns_json)
    add.add_get(CAMPAIGN_PATH, campaign_page)
    add.add_get(CAMPAIGN_PATH + "/progress.json", campaign_json)
    add.add_get(CAMPAIGN_PATH + "/recipients.csv", recipients_csv)
    actions = "|".join(registry.TRANSITIONS)
    add.add_post(CAMPAIGN_PATH + "/{action:" + actions + "}", act)
