"""A campaign in a test's world, made as the operator makes one."""

from __future__ import annotations

import io

from router.campaigns import registry
from router.campaigns.model import Campaign, parse_campaign
from tests.factories import World
from workers.campaigns import audience


async def create_campaign(
    w: World, definition: str, csv_text: str, *, rejected: int = 0, launch: bool = True
) -> Campaign:
    """A campaign as `contactrouter campaign create`, `import` and `launch` make it (left a
    draft with launch=False); exactly `rejected` rows of the audience are refused."""
    campaign = parse_campaign(definition)
    await registry.create(w.store, w.deployment, campaign)
    report = await audience.import_csv(w.store, campaign, io.StringIO(csv_text))
    assert report.rejected == rejected, report.rejects
    if launch:
        await registry.change(w.store, campaign.tenant, campaign.id, "launch")
    return campaign
