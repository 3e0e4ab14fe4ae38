"""`contactrouter survey rotate-link-key --tenant T`: a new key signs survey email's rating
links; links signed with the last KEPT_KEYS keys still work. `contactrouter survey
followups --tenant T`: the low ratings a supervisor has yet to follow up."""

from __future__ import annotations

import argparse

from router import survey_links, surveys
from router.config import Deployment
from router.errors import ContactRouterError
from router.store import Store


class SurveyCommandError(ContactRouterError, ValueError):
    """Shown to the operator as one line (the CLI prints a ContactRouterError, exit status 2)."""


def register(sub: argparse._SubParsersAction) -> list[str]:
    survey = sub.add_parser("survey", help="satisfaction surveys: rating link keys, low ratings to follow up")
    actions = survey.add_subparsers(dest="survey_action", required=True)
    rotate = actions.add_parser(
        "rotate-link-key", help=f"a new key signs rating links; the last {survey_links.KEPT_KEYS} still verify"
    )
    rotate.add_argument("--tenant", required=True)
    followups = actions.add_parser("followups", help="low ratings a supervisor has yet to follow up, newest first")
    followups.add_argument("--tenant", required=True)
    return ["survey"]


async def command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    if tenant.survey is None:
        raise SurveyCommandError(f"tenant {tenant.id} has no [tenants.survey]")
    if a.survey_action == "rotate-link-key":
        await survey_links.rotate(store, tenant.id)
        print(
            f"{tenant.id}: rating links are signed with a new key from now on; "
            f"links already sent keep working until {survey_links.KEPT_KEYS} more rotations"
        )
        return
    found = await surveys.followups(store, tenant.id)
    if not found:
        print(f"{tenant.id}: no low rating to follow up")
    for item in found:
        comment = f": {item['comment']}" if item["comment"] else ""
        print(f"{item['conversation']} rated {item['rating']} of 5 ({item['queue']}, {item['agent']}){comment}")
