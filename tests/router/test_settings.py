"""Process settings: the environment, read once at start-up, one way for every variable."""

import pytest

from router.errors import ConfigError
from router.settings import Settings


def test_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://db:6379/0",
            "REDIS_CLUSTER": "yes",
            "CONTACTROUTER_CONSUMER": "routing.2",
            "CONTACTROUTER_MAX_DELIVERIES": "9",
            "PORT": "9000",
            "LOG_LEVEL": "debug",
        }
    )
    assert settings.redis_url == "redis://db:6379/0"
    assert settings.cluster is True
    assert settings.consumer == "routing.2"
    assert settings.max_deliveries == 9
    assert settings.port == 9000
    assert settings.log_level == "DEBUG"


def test_no_redis_url_means_the_embedded_store():
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.config_path is None
    assert settings.claim_idle_ms == 30_000


def test_a_malformed_number_in_the_environment_is_a_config_error():
    with pytest.raises(ConfigError, match="environment"):
        Settings.from_env({"PORT": "eighty"})


def test_a_malformed_number_in_the_environment_stops_start_up():
    with pytest.raises(ConfigError, match="environment: "):
        Settings.from_env({"CONTACTROUTER_BATCH": "lots"})


@pytest.mark.parametrize(
    "variable",
    [
        "PORT",
        "METRICS_PORT",
        "CONTACTROUTER_SEND_LEASE_MS",
        "CONTACTROUTER_DISPATCH_CONCURRENCY",
        "CONTACTROUTER_STREAM_KEEP_HOURS",
        "SMTP_RELAY_PORT",
        "TRUSTED_PROXY_HOPS",
    ],
)
def test_a_non_numeric_number_in_the_environment_names_the_variable(variable):
    with pytest.raises(ConfigError, match=rf"^environment: {variable}: 'lots' is not a number$"):
        Settings.from_env({variable: "lots"})


@pytest.mark.parametrize(
    ("variable", "value", "least"),
    [
        ("CONTACTROUTER_DISPATCH_CONCURRENCY", "0", 1),
        ("CONTACTROUTER_BATCH", "0", 1),
        ("CONTACTROUTER_BLOCK_MS", "0", 1),  # Redis would block for ever
        ("CONTACTROUTER_MAX_DELIVERIES", "0", 1),
        ("PORT", "-1", 0),
        ("TRUSTED_PROXY_HOPS", "-2", 0),
    ],
)
def test_a_number_out_of_range_in_the_environment_stops_start_up_naming_the_variable(variable, value, least):
    with pytest.raises(ConfigError, match=rf"^environment: {variable}: must be at least {least}, not '{value}'$"):
        Settings.from_env({variable: value})


def test_a_blank_number_in_the_environment_means_its_default():
    settings = Settings.from_env({"METRICS_PORT": "", "CONTACTROUTER_SEND_LEASE_MS": ""})
    assert (settings.metrics_port, settings.send_lease_ms) == (0, 120_000)


def test_an_empty_environment_gives_the_defaults_written_on_settings():
    assert Settings.from_env({}) == Settings()


def test_blank_variables_mean_their_defaults_too():
    blank = {"HOST": "", "REDIS_CLUSTER": " ", "LOG_LEVEL": "", "SMTP_RELAY_TLS": "", "PUBLIC_URL": ""}
    assert Settings.from_env(blank) == Settings()


TLS = {"SMTP_TLS_CERT": "cert.pem", "SMTP_TLS_KEY": "key.pem"}  # what requiring STARTTLS needs
FLAGS = [
    ("REDIS_CLUSTER", "cluster"),
    ("SMTP_REQUIRE_STARTTLS", "smtp_require_starttls"),
    ("TWILIO_SIGNATURES", "twilio_signatures"),
]


@pytest.mark.parametrize(("variable", "field"), FLAGS)
@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "ON", "True", " yes "])
def test_every_flag_is_on_for_the_same_words(variable, field, value):
    assert getattr(Settings.from_env({**TLS, variable: value}), field) is True


@pytest.mark.parametrize(("variable", "field"), FLAGS)
@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF", "False"])
def test_every_flag_is_off_for_the_same_words(variable, field, value):
    assert getattr(Settings.from_env({**TLS, variable: value}), field) is False


@pytest.mark.parametrize(("variable", "_field"), FLAGS)
@pytest.mark.parametrize("value", ["enabled", "2", "y", "nope"])
def test_a_flag_that_is_neither_on_nor_off_stops_start_up_naming_the_variable(variable, _field, value):
    with pytest.raises(ConfigError, match=rf"^environment: {variable}: '{value}' is neither on .* nor off"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("value", ["debug", "Warning", "ERROR", "critical"])
def test_the_log_level_is_one_of_loggings_names_in_any_case(value):
    assert Settings.from_env({"LOG_LEVEL": value}).log_level == value.upper()


def test_an_unknown_log_level_stops_start_up_naming_the_levels():
    with pytest.raises(ConfigError, match=r"^environment: LOG_LEVEL: must be one of .*DEBUG.*, not 'verbose'$"):
        Settings.from_env({"LOG_LEVEL": "verbose"})


def test_the_relay_port_follows_its_tls_mode_unless_set():
    assert Settings.from_env({"SMTP_RELAY_TLS": "TLS"}).smtp_relay_port == 465
    assert Settings.from_env({"SMTP_RELAY_TLS": "starttls"}).smtp_relay_port == 587
    assert Settings.from_env({"SMTP_RELAY_TLS": "tls", "SMTP_RELAY_PORT": "2465"}).smtp_relay_port == 2465


def test_a_secret_is_kept_as_set():
    assert Settings.from_env({"SMTP_RELAY_PASSWORD": " pass word "}).smtp_relay_password == " pass word "


def test_trusted_networks_set_blank_trust_no_network():
    assert Settings.from_env({"SMTP_TRUSTED_NETWORKS": ""}).smtp_trusted_networks == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_TLS_CERT": "cert.pem"}, "SMTP_TLS_CERT and SMTP_TLS_KEY go together"),
        ({"SMTP_TLS_KEY": "key.pem"}, "SMTP_TLS_CERT and SMTP_TLS_KEY go together"),
        ({"SMTP_REQUIRE_STARTTLS": "on"}, "SMTP_REQUIRE_STARTTLS needs SMTP_TLS_CERT and SMTP_TLS_KEY"),
    ],
)
def test_tls_settings_that_only_work_together_stop_start_up_in_every_process(env, message):
    with pytest.raises(ConfigError, match=f"^environment: {message}"):
        Settings.from_env(env)


def test_templates_dir_must_be_a_folder(tmp_path):
    assert Settings.from_env({"TEMPLATES_DIR": str(tmp_path)}).templates_dir == str(tmp_path)
    with pytest.raises(ConfigError, match=r"TEMPLATES_DIR: .* is not a folder"):
        Settings.from_env({"TEMPLATES_DIR": str(tmp_path / "missing")})


def test_a_deployments_own_templates_are_used_once_applied_and_the_installed_ones_after_reset(tmp_path):
    from router import templating

    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "login.html").write_text("our own login for {{ who }}")
    installed = templating.folder()
    try:
        templating.use(str(tmp_path))
        assert templating.pages().get_template("inbox/login.html").render(who="acme") == "our own login for acme"
    finally:
        templating.use("")
    assert templating.folder() == installed
    assert "our own login" not in (installed / "inbox" / "login.html").read_text()


def test_several_redis_nodes_are_seeds_of_a_cluster_and_only_of_one():
    seeds = "redis://:pw@10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"
    assert Settings.from_env({"REDIS_URL": seeds, "REDIS_CLUSTER": "on"}).redis_url == seeds
    with pytest.raises(ConfigError, match=r"^environment: REDIS_URL: several nodes .* REDIS_CLUSTER=true$"):
        Settings.from_env({"REDIS_URL": seeds})


def test_the_retry_budget_outlasts_a_cluster_failover_unless_told_otherwise():
    assert Settings.from_env({}).redis_retry_s == 20.0
    assert Settings.from_env({"REDIS_RETRY_S": "35.5"}).redis_retry_s == 35.5
    with pytest.raises(ConfigError, match=r"^environment: REDIS_RETRY_S: 'soon' is not a number$"):
        Settings.from_env({"REDIS_RETRY_S": "soon"})


def test_the_client_address_is_the_peers_unless_proxies_are_trusted():
    forwarded = ["10.0.0.1, 198.51.100.9", "203.0.113.7"]  # the client's claim, then what two proxies appended
    assert Settings().client_address("192.0.2.1", forwarded) == "192.0.2.1"  # X-Forwarded-For ignored
    assert Settings(trusted_proxy_hops=1).client_address("192.0.2.1", forwarded) == "203.0.113.7"
    assert Settings(trusted_proxy_hops=2).client_address("192.0.2.1", forwarded) == "198.51.100.9"
    assert Settings(trusted_proxy_hops=1).client_address("192.0.2.1", []) == "192.0.2.1"  # not through the proxy
    assert Settings(trusted_proxy_hops=4).client_address("192.0.2.1", forwarded) == "192.0.2.1"
    assert Settings().client_address(None, []) == "unknown"


def test_login_client_failures_is_at_least_one():
    assert Settings.from_env({"LOGIN_CLIENT_FAILURES": "200"}).login_client_failures == 200
    with pytest.raises(ConfigError, match="LOGIN_CLIENT_FAILURES: must be at least 1"):
        Settings.from_env({"LOGIN_CLIENT_FAILURES": "0"})


def test_metrics_port_may_be_an_offset_from_port_so_each_honcho_process_gets_its_own():
    # honcho gives each process its PORT (web 5000, smtp 5100, routing 5200 and 5201, ...)
    ports = [Settings.from_env({"PORT": str(p), "METRICS_PORT": "+1000"}).metrics_port for p in (5000, 5200, 5201)]
    assert ports == [6000, 6200, 6201]
    assert Settings.from_env({"METRICS_PORT": "+1"}).metrics_port == 8081  # PORT's default, 8080
    assert Settings.from_env({"METRICS_PORT": "9100"}).metrics_port == 9100
    for bad in ("+x", "+70000"):
        with pytest.raises(ConfigError, match="METRICS_PORT"):
            Settings.from_env({"METRICS_PORT": bad})
