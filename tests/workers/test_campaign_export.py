"""Results a team can work from: every recipient's line (workers/campaigns/export.py), from
the CLI (CSV, --json) and the campaign page (CSV), audited as exports; and `sent` counted
once per recipient however often it was retried, so progress and the export agree."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json

import pytest

from router import agents, audit, events
from router.campaigns import registry
from router.customers import identity
from router.keys import Keys
from tests.factories import PROMISE, world
from tests.workers.campaigns import Clock, Outbound, create_campaign
from tests.workers.test_campaign_results import CAMPAIGN, DEPLOYMENT
from workers.campaigns import cli, export
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
NOON_NY = dt.datetime(2027, 6, 1, 16, 0, tzinfo=dt.UTC)
PEOPLE = ["Jane", "Bob", "Carl", "Dana", "Eve", "Finn"]
AUDIENCE = "phone,email,name,balance,account\n" + "".join(
    f"+1212555000{i},{name.lower()}@example.com,{name},$1{i}0.00,A-{i + 1}\n" for i, name in enumerate(PEOPLE)
)


def command(*argv: str) -> argparse.Namespace:
    """`contactrouter campaign ARGV...` as the CLI parses it."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["campaign", *argv])


def number(name: str) -> str:
    return f"+1212555000{PEOPLE.index(name)}"


def report(message: str, status: str, channel: str) -> events.DeliveryStatus:
    return events.DeliveryStatus(
        tenant="acme", occurred_at=events.now_ms(), channel=channel, message=message, status=status, provider_id="p1"
    )


@pytest.fixture
async def finished():
    """Six recipients, one of each fate:
    Jane: her text failed, the retry by email was delivered; she replied and promised to pay.
    Bob: his text failed, and the email too. Carl: on the do-not-contact list before.
    Dana: texted STOP after her text was queued. Eve: texted, no report yet.
    Finn: a revocation awaits an agent, so he waits."""
    with Clock(NOON_NY) as clock:
        w = await world(DEPLOYMENT)
        await create_campaign(w, CAMPAIGN, AUDIENCE)
        await w.store.redis.sadd(KEYS.do_not_contact, number("Carl"))
        await w.store.redis.hset(KEYS.revocations, identity("sms", number("Finn")), b"{}")
        worker = CampaignWorker(w.store, w.deployment)
        outbound = Outbound(w, Dispatcher(w.store, deployment=w.deployment))
        results = Results(w.store)
        assert await worker.step() == 6
        await w.store.redis.sadd(KEYS.suppression("sms"), number("Dana"))
        assert await outbound.dispatch() == 4  # Jane, Bob, Dana (refused as it was to leave), Eve
        await results.apply("acme", report("cmp-dues-1-1", "failed", "sms"))
        await results.apply("acme", report("cmp-dues-2-1", "failed", "sms"))
        clock.forward(60)
        assert await worker.step() == 2  # the two retries by email (Finn is looked at again in 15 minutes)
        assert await outbound.dispatch() == 2
        await results.apply("acme", report("cmp-dues-1-2", "delivered", "email"))
        await results.apply("acme", report("cmp-dues-2-2", "failed", "email"))
        conversation = await w.arrive(address=number("Jane"), body="I can pay on the 31st")
        await w.available("amy")
        assert await w.accept_offer("amy") == conversation
        await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
        for event in await w.events():  # the results follower reads it all, some of it again
            await results.apply("acme", event)
        yield w


async def all_rows(w) -> dict[str, export.RecipientResult]:
    return {row.name: row async for row in export.rows(w.store, "acme", "dues")}


async def test_each_recipient_has_one_line_saying_what_became_of_them(finished):
    rows = await all_rows(finished)
    assert list(rows) == PEOPLE  # in file order
    jane = rows["Jane"]
    assert (jane.outcome, jane.channel, jane.address, jane.attempts) == ("delivered", "email", "jane@example.com", 2)
    assert jane.contacted_at == "2027-06-01T16:01:00Z"  # when the email left
    assert (jane.replied, jane.converted, jane.disposition) == (True, True, "promise_to_pay")
    assert (jane.promise_amount, jane.promise_date, jane.account, jane.phone) == (
        "120.50",
        "2099-01-31",
        "A-1",
        number("Jane"),
    )
    bob = rows["Bob"]
    assert (bob.outcome, bob.channel, bob.attempts, bob.replied) == ("failed", "email", 2, False)
    assert bob.reason.startswith("failed")
    assert (rows["Carl"].outcome, rows["Carl"].reason, rows["Carl"].attempts) == ("suppressed", "do_not_contact", 0)
    dana = rows["Dana"]
    assert (dana.outcome, dana.channel, dana.reason) == ("suppressed", "sms", "refused as it was to leave: opted_out")
    eve = rows["Eve"]
    assert (eve.outcome, eve.channel, eve.address, eve.contacted_at) == (
        "sent",
        "sms",
        number("Eve"),
        "2027-06-01T16:00:00Z",
    )
    assert (rows["Finn"].outcome, rows["Finn"].contacted_at, rows["Finn"].channel) == ("queued", "", "")


async def test_progress_counts_a_retried_recipient_once_and_equals_the_exports_counts(finished):
    progress = await registry.progress(finished.store, "acme", "dues")
    c = progress.counts
    # Jane's text failed and her email went: one recipient sent, delivered; Bob's two failures: one sent, one failed
    assert (c["sent"], c["attempts"], c["retried"], c["delivered"], c["failed"]) == (3, 5, 2, 1, 1)
    counted = export.counts([row async for row in export.rows(finished.store, "acme", "dues")])
    assert counted == {
        "queued": progress.queued,
        "sent": c["sent"],
        "delivered": c["delivered"],
        "failed": c["failed"],
        "suppressed": c["suppressed"],
        "skipped": c["skipped"],
        "replied": c["replied"],
        "converted": c["converted"],
    }
    assert counted["queued"] + counted["sent"] + counted["suppressed"] + counted["skipped"] == len(PEOPLE)
    assert progress.done == len(PEOPLE) - 1 and progress.share == pytest.approx(5 / 6)


async def test_the_cli_writes_csv_and_json_and_each_is_audited(finished, tmp_path, capsys):
    await cli.command(finished.store, finished.deployment, command("export", "dues", "-o", str(tmp_path / "r.csv")))
    assert capsys.readouterr().out == f"wrote 6 recipients to {tmp_path / 'r.csv'}\n"
    table = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert [r["name"] for r in table] == PEOPLE
    assert table[0]["outcome"] == "delivered" and table[0]["replied"] == "yes" and table[1]["replied"] == ""
    assert list(table[0]) == list(export.COLUMNS)

    await cli.command(finished.store, finished.deployment, command("export", "dues", "--json"))
    shown = json.loads(capsys.readouterr().out)
    assert [r["outcome"] for r in shown] == ["delivered", "failed", "suppressed", "suppressed", "sent", "queued"]
    assert shown[0]["promise_amount"] == "120.50" and shown[0]["replied"] is True
    entries, _ = await audit.read(finished.store, tenant="acme", action="export")
    assert [(e.target, e.detail, e.client) for _id, e in entries] == [
        ("campaign dues recipients", "json", "cli"),
        ("campaign dues recipients", "csv", "cli"),
    ]
