"""Every example campaign in templates/campaigns/ is one `contactrouter campaign create`
accepts for the demo deployment, and renders for the example audience."""

import io
from pathlib import Path

import pytest

from router.campaigns import registry
from router.campaigns.isolated import shared
from router.campaigns.model import check_against, load_campaign, missing_dispositions
from router.config import load_deployment
from tests.factories import deployment, world
from workers.campaigns import audience

EXAMPLES = Path(__file__).parents[2] / "templates" / "campaigns"
FILES = sorted(EXAMPLES.glob("*.toml")) + sorted(EXAMPLES.glob("*.json"))


def test_there_is_an_example_of_every_channel_campaigns_send_by():
    assert {load_campaign(path).channel for path in FILES} == {"sms", "email", "voice"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
async def test_an_example_campaign_fits_the_demo_deployment_and_renders_for_the_example_audience(path):
    campaign = load_campaign(path)
    check_against(campaign, load_deployment(None))  # its tenant and queue exist
    if campaign.tenant != "acme":
        return  # the example audience is acme's
    w = await world()
    report = await audience.import_csv(w.store, campaign, io.StringIO((EXAMPLES / "acme-audience.csv").read_text()))
    assert report.imported == 3
    assert await shared().problems(campaign, await registry.first_recipients(w.store, "acme", campaign.id, 3)) == []


def test_a_collections_campaign_names_the_dispositions_its_tenants_agents_cannot_record_yet():
    campaign = load_campaign(EXAMPLES / "acme-collections.toml")
    assert missing_dispositions(campaign, load_deployment(None)) == []  # the demo tenant lists them all
    narrow = deployment(
        """
        [[tenants]]
        id = "acme"
        dispositions = ["resolved", "promise_to_pay"]
        [[tenants.queues]]
        id = "support"
        [[tenants.queues]]
        id = "collections"
        """
    )
    missing = ["paid", "disputed", "wrong_number", "not_interested", "do_not_call"]
    assert missing_dispositions(campaign, narrow) == missing
