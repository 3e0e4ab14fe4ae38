"""A 3-primary / 3-replica Redis Cluster loses a primary under webhook traffic: the client
waits the failover out (REDIS_RETRY_S, above the node timeout), every webhook is stored
once, a client with a shorter budget answers 503 (Twilio retries), never 500, and a process
started afterwards starts although the node REDIS_URL names first is dead."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from ops.redis_cluster import RedisClusterNodes
from ops.redis_server import RedisServerMissing
from router.app import processes
from router.app.web import application
from router.keys import Keys
from router.settings import Settings
from router.store import STORE_ERRORS, connect
from tests.factories import world
from tests.processes import wait_for

pytestmark = pytest.mark.e2e  # a cluster of six nodes of its own and a failover: seconds long

TOKEN = "sandbox-token"
# slots 11304, 9341 and 1931: one tenant on each primary
NUMBERS = {"acme": "+15550100001", "stark": "+15550100002", "wayne": "+15550100003"}
TENANTS = "".join(
    f'[[tenants]]\nid = "{tenant}"\nsms = {{ numbers = ["{number}"] }}\n[[tenants.queues]]\nid = "support"\n'
    for tenant, number in NUMBERS.items()
)


@pytest.fixture
def cluster() -> Iterator[RedisClusterNodes]:
    """Three primaries, a replica each, and a 2 s node timeout (Redis's default is 15 s)."""
    try:
        nodes = RedisClusterNodes(primaries=3, replicas=1, node_timeout_ms=2000)
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: cluster tests must run in CI", pytrace=False)
        pytest.skip(f"cluster test needs redis-server and redis-cli: {exc}")
    with nodes:
        yield nodes


class Twilio:
    """Posts signed incoming-SMS webhooks to one web app; remembers every answer."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.answers: list[int] = []

    def webhook(self, tenant: str, body: str) -> dict:
        sid = f"SM{uuid.uuid4().hex}"
        return {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15551230000",
                "To": NUMBERS[tenant], "Body": body}  # fmt: skip

    async def post(self, params: dict) -> int:
        url = str(self.client.make_url("/twilio/sms"))
        signature = RequestValidator(TOKEN).compute_signature(url, params)
        response = await self.client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
        self.answers.append(response.status)
        return response.status


async def test_a_primary_killed_under_webhooks_fails_over_and_nothing_is_refused_lost_or_doubled(cluster):
    probe = connect(Settings(redis_url=cluster.url, cluster=True))
    await probe.redis.initialize()
    owner = probe.redis.get_node_from_key(Keys("acme").base)
    await probe.close()
    victim = next(node for node in cluster.nodes if node.port == int(owner.port))
    others = [node for node in cluster.nodes if node is not victim]
    # REDIS_URL names the primary that dies first.
    settings = Settings(
        redis_url=",".join(node.url for node in [victim, *others]), cluster=True, twilio_sandbox_token=TOKEN
    )
    patient, hasty = connect(settings), connect(msgspec.structs.replace(settings, redis_retry_s=0.1))
    w = await world(TENANTS, store=patient)
    sent = {tenant: [] for tenant in NUMBERS}
    try:
        async with (
            TestClient(TestServer(application(patient, w.deployment, settings))) as patient_client,
            TestClient(TestServer(application(hasty, w.deployment, settings))) as hasty_client,
        ):
            twilio, impatient = Twilio(patient_client), Twilio(hasty_client)

            async def traffic(round_: int) -> None:
                for tenant in NUMBERS:
                    params = twilio.webhook(tenant, f"round {round_}")
                    sent[tenant].append(params["MessageSid"])
                    await twilio.post(params)

            await traffic(0)
            victim.kill()
            refused = impatient.webhook("acme", "while the shard fails over")
            assert await impatient.post(refused) == 503  # Retry-After: Twilio comes back
            # Meanwhile the patient client waits the failover out, webhooks on every shard.
            await asyncio.gather(*(traffic(n) for n in range(1, 4)))
            wait_for(lambda: cluster.states() == ["ok"] * 5, "the replica taking over")
            await traffic(4)
            assert await impatient.post(refused) == 200  # Twilio's retry lands
            sent["acme"].append(refused["MessageSid"])

        assert set(twilio.answers) == {200}, twilio.answers
        assert 500 not in impatient.answers
        for tenant, sids in sent.items():
            stored = [fields[b"e"] for _id, fields in await patient.redis.xrange(Keys(tenant).inbound)]
            assert len(stored) == len(sids) == len(set(sids)), tenant
            assert all(any(sid.encode() in entry for entry in stored) for sid in sids), tenant

        # A process starting now finds the cluster through the seeds that are alive...
        restarted = connect(settings)
        try:
            async with asyncio.timeout(30):
                await processes.prepare(restarted, w.deployment)
        finally:
            await restarted.close()
        # ...where one given only the dead node finds nothing.
        stranded = connect(msgspec.structs.replace(settings, redis_url=victim.url))
        try:
            with pytest.raises(STORE_ERRORS):
                await stranded.probe.initialize()
        finally:
            await stranded.close()
    finally:
        await patient.close()
        await hasty.close()
