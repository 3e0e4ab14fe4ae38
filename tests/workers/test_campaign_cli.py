"""`contactrouter campaign ...` on the example campaign, against a real redis-server."""

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from router.app import cli
from router.config import load_deployment
from router.keys import Keys
from router.settings import Settings
from router.store import connect
from workers.campaigns.worker import CampaignWorker

EXAMPLES = Path(__file__).parents[2] / "templates" / "campaigns"


@pytest.fixture
def run(redis_url, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CONTACTROUTER_CONFIG", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["campaign", *argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_the_example_campaign_from_file_to_progress(run, redis_url):
    status, out, _ = run("create", str(EXAMPLES / "acme-collections.toml"))
    assert status == 0 and "created campaign acme-dues of acme" in out
    assert "cannot close with" not in out  # the demo tenant lists every collections disposition

    status, out, _ = run("import", "acme-dues", str(EXAMPLES / "acme-audience.csv"))
    assert status == 0
    assert "imported 3 recipients, rejected 1 rows" in out
    assert "line 5: phone 'not-a-number' is not a phone number" in out

    status, out, _ = run("preview", "acme-dues", "-n", "3")
    assert "Hi Jane Doe, your Acme Energy account AC-1001 has $120.50 due on 2026-12-01." in out
    assert "Hola Ana García" in out  # her locale's template

    assert run("launch", "acme-dues")[1] == "campaign acme-dues: running\n"
    status, _, err = run("launch", "acme-dues")
    assert status == 2 and "cannot launch campaign acme-dues: it is running" in err

    async def send_all() -> None:
        store = connect(Settings(redis_url=redis_url))
        try:
            # Tuesday 1 December 2026, 17:00 UTC: noon in New York, 09:00 in San Francisco, 18:00 in Madrid
            tuesday = dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.UTC)
            worker = CampaignWorker(store, load_deployment(None), clock=lambda: tuesday)
            await worker.run_batch("acme", "acme-dues")
        finally:
            await store.close()

    asyncio.run(send_all())
    status, out, _ = run("progress", "acme-dues")
    assert status == 0
    assert out.startswith("[##############################] 100% running  queued 0  sent 3  delivered 0")


def test_operator_lists_and_errors(run):
    status, out, _ = run("dnc", "add", "(212) 555-0100", "Jane@Example.com", "--tenant", "acme")
    assert status == 0 and "+12125550100" in out and "jane@example.com" in out
    assert run("dnc", "show", "--tenant", "acme")[1].split() == ["+12125550100", "jane@example.com"]
    status, _, err = run("dnc", "add", "not a number", "--tenant", "acme")
    assert status == 2 and "not a phone number" in err
    status, _, err = run("launch", "nope")
    assert status == 2 and "no campaign 'nope'" in err
    status, _, err = run("create", "/nonexistent.toml")
    assert status == 2 and "No such file" in err


def test_create_accepts_every_example_campaign(run):
    examples = sorted(EXAMPLES.glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        status, out, err = run("create", str(path))
        assert status == 0, err
        assert "created campaign" in out


def test_preview_of_the_voice_example_shows_what_an_answering_machine_hears(run):
    run("create", str(EXAMPLES / "acme-voice.toml"))
    status, out, _ = run("import", "acme-calls", str(EXAMPLES / "acme-audience.csv"))
    assert status == 0 and "warning" not in out
    status, out, _ = run("preview", "acme-calls", "-n", "1")
    assert out.splitlines() == [
        "--- line 2: voice to +12125550100",
        "Hello Jane Doe, this is Acme Energy. Your account AC-1001 has a balance of $120.50 due on 2026-12-01.",
        "--- line 2: voice machine to +12125550100",
        "Hello, this is Acme Energy with a message for Jane Doe about account AC-1001. "
        "Please call us back at 555 0100 1. Thank you.",
    ]


def test_import_warns_when_the_first_recipients_messages_do_not_render(run, tmp_path):
    run("create", str(EXAMPLES / "acme-voice.toml"))
    audience = tmp_path / "no-due-date.csv"
    audience.write_text("phone,name,account,balance\n+12125550100,Jane,AC-1,$5\n")
    status, out, _ = run("import", "acme-calls", str(audience))
    assert status == 0 and "imported 1 recipients" in out
    assert "warning: the first recipients' messages do not render (1 of 1):" in out
    assert "line 2: template voice/en, line 1: 'due_date' is undefined" in out


def test_results_per_campaign_and_variant_on_screen_and_as_csv(run, tmp_path):
    run("create", str(EXAMPLES / "acme-collections.toml"))
    status, out, _ = run("results", "acme-dues")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "campaign acme-dues of acme (collections): draft"
    assert lines[1].split() == [
        "variant", "share", "sent", "delivered", "failed", "suppressed", "replied", "converted", "promised",
        "conversion", "promise_to_pay", "paid", "disputed", "wrong_number", "not_interested",
    ]  # fmt: skip
    assert lines[2].split() == ["all", "100%", "0", "0", "0", "0", "0", "0", "0.00", "0.0%", "0", "0", "0", "0", "0"]
    target = tmp_path / "results.csv"
    status, out, _ = run("results", "acme-dues", "--csv", str(target))
    assert status == 0 and out == f"wrote 1 rows to {target}\n"
    assert target.read_text().splitlines()[1] == "acme-dues,all,100,0,0,0,0,0,0,0.00,0.0000,0,0,0,0,0"


def test_create_and_launch_of_an_email_campaign_say_why_it_cannot_go_out(run, monkeypatch, tmp_path):
    """Without the tenant's address, campaign email could carry no working unsubscribe (its
    mailto: goes there); the demo's own offer, against a deployment whose globex has none."""
    demo = (Path(__file__).parents[2] / "router" / "demo.toml").read_text("utf-8")
    bare = tmp_path / "bare.toml"
    bare.write_text(demo.replace('addresses = ["offers@globex.example"]', ""), "utf-8")
    offer = str(EXAMPLES / "globex-upgrade.toml")
    monkeypatch.setenv("CONTACTROUTER_CONFIG", str(bare))
    status, _, err = run("create", offer)
    assert status == 2 and "an email campaign cannot go out: tenant globex has no email address" in err
    monkeypatch.delenv("CONTACTROUTER_CONFIG")  # the demo, with globex's address
    assert run("create", offer)[0] == 0
    monkeypatch.setenv("CONTACTROUTER_CONFIG", str(bare))  # ...which the deployment has lost by launch
    status, _, err = run("launch", "globex-fibre")
    assert status == 2 and "cannot launch campaign globex-fibre: an email campaign cannot go out" in err
    monkeypatch.delenv("CONTACTROUTER_CONFIG")
    assert run("launch", "globex-fibre")[1] == "campaign globex-fibre: running\n"


def audience_rows(count: int, *, latin1_at: int = 0) -> bytes:
    """The example audience's columns, `count` rows (lines 2 on), and at line `latin1_at`
    a name saved in Latin-1, as a spreadsheet exports it (é is the one byte E9)."""
    lines = ["phone,email,name,account,balance,due_date,offer,timezone,locale"]
    lines += [f"+1212555{i:04d},,Person {i},AC-{i},$1.00,2026-12-01,,," for i in range(count)]
    data = ("\n".join(lines) + "\n").encode()
    if latin1_at:
        start = data.index(f"Person {latin1_at - 2},".encode())
        data = data[:start] + "Jos\xe9".encode("latin-1") + data[start + len("Person") :]
    return data


def test_a_file_that_is_not_utf8_is_refused_whole_with_the_right_line_and_byte(run, tmp_path):
    """The case that found it: a byte of Latin-1 at line 2,302 aborted the import after 2,000
    rows with the byte's place in an 8 KB read ("byte 4711"), and importing the fixed file
    then refused those 2,000 rows as duplicates."""
    assert run("create", str(EXAMPLES / "acme-collections.toml"))[0] == 0
    broken = tmp_path / "audience.csv"
    broken.write_bytes(audience_rows(2500, latin1_at=2302))
    position = broken.read_bytes().index(b"\xe9")
    line_start = broken.read_bytes().rindex(b"\n", 0, position) + 1
    status, out, err = run("import", "acme-dues", str(broken))
    assert status == 2 and out == ""
    assert f"line 2,302, byte {position - line_start + 1} (byte {position + 1:,} of the file): E9 is not UTF-8" in err
    assert "Nothing was imported" in err
    assert "queued 0  sent 0" in run("progress", "acme-dues")[1]

    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(broken.read_bytes().replace(b"\xe9", "é".encode()))
    status, out, _ = run("import", "acme-dues", str(fixed))
    assert status == 0 and out.startswith("imported 2,500 recipients, rejected 0 rows\n")


def test_results_of_a_campaign_with_agents_on_the_line_give_the_dialler_figures(run, redis_url):
    run("create", str(EXAMPLES / "acme-dialer.toml"))

    async def measured() -> None:
        store = connect(Settings(redis_url=redis_url))
        try:
            today = dt.datetime.now(dt.UTC).date().isoformat()
            await store.redis.hset(
                Keys("acme").campaign_dial_figures("acme-dialer"),
                mapping={"outcomes": 200, "answered": 60, "connects": 59, "abandoned": 1, "machines": 30,
                         f"answered:{today}": 60, f"abandoned:{today}": 1},
            )
        finally:
            await store.close()

    asyncio.run(measured())
    status, out, _ = run("results", "acme-dialer")
    assert status == 0 and "connects" not in out  # nobody has taken a call yet

    async def taken() -> None:
        store = connect(Settings(redis_url=redis_url))
        try:
            await store.redis.hset(
                Keys("acme").campaign_agent_figures("acme-dialer"),
                mapping={"amy:connects": 59, "amy:right_party": 50, "amy:promises": 20, "amy:promised_cents": 250000,
                         "amy:talk_ms": 9_000_000, "amy:wrap_ms": 1_200_000},
            )
        finally:
            await store.close()

    asyncio.run(taken())
    status, out, _ = run("results", "acme-dialer")
    lines = out.splitlines()
    assert lines[-3].split() == ["agent", "connects", "right", "party", "promises", "promised", "talk", "wrap"]
    assert lines[-2].split() == ["amy", "59", "50", "20", "2,500.00", "2:30:00", "0:20:00"]
    assert status == 0
    assert out.splitlines()[-1] == (
        "dialler (predictive): 200 dials (0 in flight), 60 answered by a person (30.0% of calls that rang out), "
        "30 machines, 59 put through to an agent, 1 abandoned; 1.67% of answered calls abandoned over 30 days "
        "(limit 3%)"
    )
