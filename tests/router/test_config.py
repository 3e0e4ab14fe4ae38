"""Configuration: a deployment file and the environment, checked at start-up."""

import pytest

from router.config import load_deployment, parse_deployment, resolve_secrets, warnings_of
from router.config.fields import FieldError
from router.config.routing import DEFAULT_CAPACITY, Agent, Queue, capacity_of
from router.errors import ConfigError, ContactRouterError, UnknownTenant
from tests.factories import SUPPORT, deployment


def test_the_bundled_demo_deployment_loads():
    demo = load_deployment(None)
    acme = demo.tenant("acme")
    assert [q.id for q in acme.queues] == ["support", "billing"]
    assert acme.entry_queue("email") == "billing"
    assert acme.entry_queue("sms") == "support"  # the default entry
    assert demo.tenant("globex").queue("sales").strategy == "least_occupied"


def test_a_deployment_file_is_read_from_disk(tmp_path):
    path = tmp_path / "centre.toml"
    path.write_text(SUPPORT)
    assert load_deployment(path).tenant("acme").queue("support").target == "'support' in skills"


def test_a_missing_file_names_the_path():
    with pytest.raises(ConfigError, match=r"nowhere\.toml"):
        load_deployment("/nonexistent/nowhere.toml")


def test_defaults_fill_in_what_a_small_file_leaves_out():
    tenant = deployment(SUPPORT).tenant("acme")
    queue = tenant.queue("support")
    assert queue.strategy == "longest_idle"
    assert (queue.sla.seconds, queue.sla.percent) == (20, 80.0)
    assert queue.reservation_timeout is None  # falls back to the tenant's
    assert tenant.reservation_timeout == 30
    assert tenant.max_missed_offers == 3


def test_the_first_queue_is_the_entry_when_none_is_named():
    tenant = deployment(
        """
        [[tenants]]
        id = "acme"
        [[tenants.queues]]
        id = "first"
        [[tenants.queues]]
        id = "second"
        """
    ).tenant("acme")
    assert tenant.entry_queue("voice") == "first"


def test_fractional_seconds_are_allowed_for_timeouts():
    tenant = deployment(SUPPORT.replace('id = "acme"', 'id = "acme"\nreservation_timeout = 0.05')).tenant("acme")
    assert tenant.reservation_timeout == 0.05


ONE_QUEUE = "[[tenants]]\nid = 'acme'\n[[tenants.queues]]\nid = 'q'\n"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("[[tenants]]\nid = 'acme'\n", r"tenants\[0\]\.queues`: a tenant needs at least one queue"),
        ("[[tenants]]\nid = 'Acme Corp'\n[[tenants.queues]]\nid = 'q'\n", r"\$\.tenants\[0\]\.id"),
        ("[[tenants]]\nid = 'acme'\ncolour = 'red'\n[[tenants.queues]]\nid = 'q'\n", "colour"),
        (
            ONE_QUEUE + "[[tenants]]\nid = 'acme'\n[[tenants.queues]]\nid = 'q'\n",
            "defined twice",
        ),
        (ONE_QUEUE + "[[tenants.queues]]\nid = 'q'\n", "unique"),
        (ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nentry = { sms = 'nope' }"), r"entry\.sms`: unknown queue"),
        (ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nentry = { pager = 'q' }"), "unknown channel 'pager'"),
        (
            ONE_QUEUE + "target = 'open(1)'\n",
            r"queues\[0\]\.target`: Call is not allowed",
        ),
        (
            ONE_QUEUE + "strategy = 'random'\n",
            "strategy",
        ),
        (
            ONE_QUEUE + "[[tenants.queues.escalation]]\nafter = 10\noverflow = 'elsewhere'\n",
            r"escalation\[0\]\.overflow`: unknown queue 'elsewhere'",
        ),
        (
            ONE_QUEUE + "[[tenants.queues.escalation]]\nafter = 10\nwiden = 'level >'\n",
            r"escalation\[0\]\.widen",
        ),
        (
            ONE_QUEUE + "[[tenants.queues.escalation]]\nafter = -1\n",
            "after",
        ),
        (
            ONE_QUEUE + "sla = { seconds = 20, breach_queue = 'tier2' }\n",
            r"sla\.breach_queue`: unknown queue 'tier2'",
        ),
        (
            ONE_QUEUE + "after_hours = { action = 'overflow' }\n",
            "overflow needs a queue",
        ),
        (
            ONE_QUEUE + "hours = { timezone = 'Mars/Olympus', mon = '09:00-17:00' }\n",
            "Mars/Olympus",
        ),
        (
            ONE_QUEUE + "hours = { mon = '9 to 5' }\n",
            "HH:MM-HH:MM",
        ),
        (
            ONE_QUEUE + "[[tenants.agents]]\nid = 'a'\n[[tenants.agents]]\nid = 'a'\n",
            "agent ids must be unique",
        ),
        (
            ONE_QUEUE + "[[tenants.agents]]\nid = 'a'\ncapacity = { fax = 1, pager = 2 }\n",
            r"agents\[0\]\.capacity`: unknown channel 'pager'",
        ),
        (
            ONE_QUEUE + "[[tenants.agents]]\nid = 'a'\ncapacity = { sms = -1 }\n",
            "capacity",
        ),
        ("tenants = [", "not valid TOML"),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nsms = { numbers = ['555-0100'] }"),
            r"sms\.numbers\[0\]`: '555-0100' is not an E\.164 number",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nsms = { numbers = ['+15550100001'] }")
            + ONE_QUEUE.replace("id = 'acme'", "id = 'globex'\nsms = { numbers = ['+15550100001'] }"),
            r"tenants\[1\]\.sms\.numbers\[0\]`: \+15550100001 already belongs to acme",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nvoice = { numbers = ['0800 ACME'] }"),
            r"voice\.numbers\[0\]`: '0800 ACME' is not an E\.164 number",
        ),
        (
            ONE_QUEUE.replace(
                "id = 'acme'", "id = 'acme'\nvoice = { menu = [{ digit = '1', label = 'Sales', queue = 'sales' }] }"
            ),
            r"voice\.menu\[0\]\.queue`: unknown queue 'sales'",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nvoice = { recording_queues = { sales = 'all' } }"),
            r"voice\.recording_queues\.sales`: unknown queue 'sales'",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nvoice = { recording = 'sometimes' }"),
            r"voice\.recording`",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nvoice = { transfer_numbers = ['555-0199'] }"),
            r"voice\.transfer_numbers\[0\]`: '555-0199' is not an E\.164 number",
        ),
        (
            ONE_QUEUE.replace("id = 'acme'", "id = 'acme'\nemail = { domains = ['localhost'] }"),
            r"email\.domains\[0\]`: 'localhost' is not an email domain",
        ),
    ],
)
def test_a_bad_file_stops_start_up_with_a_message_naming_the_field(snippet, message):
    with pytest.raises(ConfigError, match=message):
        deployment(snippet)


def test_capacity_defaults_per_channel_and_total_is_the_largest():
    capacity = capacity_of(Agent(id="a", capacity={"webchat": 8}))
    assert capacity["voice"] == DEFAULT_CAPACITY["voice"]
    assert capacity["webchat"] == 8
    assert capacity["total"] == 8


def test_an_explicit_total_caps_all_channels_together():
    capacity = capacity_of(Agent(id="a", capacity={"email": 5, "webchat": 3, "total": 4}))
    assert (capacity["email"], capacity["webchat"], capacity["total"]) == (5, 3, 4)


def test_a_voice_number_belongs_to_one_tenant_only():
    text = """
[[tenants]]
id = "acme"
voice = { numbers = ["+15550100001"] }
[[tenants.queues]]
id = "q"

[[tenants]]
id = "globex"
voice = { numbers = ["+15550100001"] }
[[tenants.queues]]
id = "q"
"""
    with pytest.raises(ConfigError, match=r"voice.numbers\[0\]`: \+15550100001 already belongs to acme"):
        parse_deployment(text)


def test_a_twilio_token_variable_that_is_not_set_stops_start_up(tmp_path, monkeypatch):
    path = tmp_path / "deploy.toml"
    path.write_text(
        '[[tenants]]\nid = "acme"\ntwilio = { account_sid = "AC' + "0" * 32 + '", auth_token_env = "ACME_TOKEN" }\n'
        '[[tenants.queues]]\nid = "q"\n'
    )
    monkeypatch.delenv("ACME_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"twilio.auth_token_env`: environment variable ACME_TOKEN is not set"):
        load_deployment(path)
    monkeypatch.setenv("ACME_TOKEN", "secret")
    assert load_deployment(path).tenants[0].twilio.auth_token == "secret"


def test_a_section_checks_itself_and_names_its_own_field():
    with pytest.raises(FieldError) as error:
        Queue(id="q", target="open(1)")
    assert (error.value.field, str(error.value)) == ("target", "target: Call is not allowed in 'open(1)'")
    with pytest.raises(FieldError, match=r"^capacity: unknown channel 'pager'$"):
        Agent(id="a", capacity={"pager": 1})


def test_in_a_file_the_sections_own_field_is_named_by_its_whole_path():
    with pytest.raises(
        ConfigError, match=r"^test\.toml: `\$\.tenants\[0\]\.agents\[1\]\.capacity`: unknown channel 'pager'$"
    ):
        deployment(ONE_QUEUE + "[[tenants.agents]]\nid = 'a'\n[[tenants.agents]]\nid = 'b'\ncapacity = { pager = 2 }\n")


def test_a_value_of_the_wrong_shape_is_named_for_what_it_should_be():
    with pytest.raises(ConfigError, match=r"`\$\.tenants\[0\]\.twilio\.account_sid`: 'AC' is not a Twilio account SID"):
        deployment(
            ONE_QUEUE.replace(
                "id = 'acme'", "id = 'acme'\ntwilio = { account_sid = 'AC' , auth_token_env = 'ACME_TOKEN' }", 1
            )
        )


def test_an_unknown_tenant_is_a_lookup_error_naming_the_known_ones():
    demo = load_deployment(None)
    with pytest.raises(UnknownTenant, match=r"^no tenant 'initech' \(known: acme, globex\)$") as error:
        demo.tenant("initech")
    assert isinstance(error.value, LookupError) and isinstance(error.value, ContactRouterError)
    assert error.value.tenant_id == "initech"


ACCOUNT = 'account_sid = "AC0123456789abcdef0123456789abcdef", auth_token_env = "ACME_TWILIO_TOKEN"'
API_KEY = 'api_key_sid = "SK0123456789abcdef0123456789abcdef", api_key_secret_env = "ACME_TWILIO_KEY"'
CALLS = """
[[tenants]]
id = "acme"
twilio = {{ {twilio} }}
voice = {{ numbers = ["+15550100001"] }}
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"
phone = "+15557000001"
[[tenants.agents]]
id = "zoe"
[[tenants.agents]]
id = "bill"
capacity = {{ voice = 0 }}
"""


def test_the_softphones_api_key_secret_is_read_from_the_variable_the_file_names():
    env = {"ACME_TWILIO_TOKEN": "token", "ACME_TWILIO_KEY": "key secret"}
    account = resolve_secrets(deployment(CALLS.format(twilio=f"{ACCOUNT}, {API_KEY}")), env).tenant("acme").twilio
    assert (account.api_key_sid, account.api_key_secret, account.softphone) == (
        "SK0123456789abcdef0123456789abcdef",
        "key secret",
        True,
    )
    with pytest.raises(ConfigError, match="ACME_TWILIO_KEY is not set"):
        resolve_secrets(deployment(CALLS.format(twilio=f"{ACCOUNT}, {API_KEY}")), {"ACME_TWILIO_TOKEN": "token"})


@pytest.mark.parametrize(
    ("twilio", "message"),
    [
        (
            f'{ACCOUNT}, api_key_sid = "SK0123456789abcdef0123456789abcdef"',
            "needs both api_key_sid and api_key_secret_env",
        ),
        (f'{ACCOUNT}, api_key_sid = "AK01", api_key_secret_env = "K"', "is not a Twilio API key SID"),
        (f'{ACCOUNT}, {API_KEY}, api_key_secret = "in the file"', "secrets never go in the file"),
    ],
)
def test_a_half_or_misplaced_api_key_is_refused(twilio, message):
    with pytest.raises(ConfigError, match=message):
        deployment(CALLS.format(twilio=twilio))


def test_config_check_warns_of_agents_who_could_never_answer_a_call():
    without_key = deployment(CALLS.format(twilio=ACCOUNT))
    # amy has a phone, bill takes no calls: only zoe is left without a way to answer
    assert warnings_of(without_key) == [
        "tenant acme: agent zoe can take voice calls but has neither a phone nor the softphone (set the agent's "
        "phone, or [tenants.twilio] api_key_sid and api_key_secret_env, or give the agent capacity voice = 0)"
    ]
    assert warnings_of(deployment(CALLS.format(twilio=f"{ACCOUNT}, {API_KEY}"))) == []  # the softphone rings
    assert warnings_of(load_deployment(None)) == []  # the sandbox: simulated calls ring the softphone
