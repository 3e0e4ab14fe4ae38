"""`contactrouter`: a refused request is one line and exit status 2; a bug is a traceback."""

from __future__ import annotations

import pytest

from ops import staffing
from router.app import cli

STAFFING = ["staffing", "--calls-per-interval", "100", "--aht", "180"]  # needs no store


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOG_LEVEL", "REDIS_URL", "REDIS_CLUSTER", "CONTACTROUTER_CONFIG", "SMTP_REQUIRE_STARTTLS"):
        monkeypatch.delenv(name, raising=False)


def test_config_check_passes_the_demo_deployment(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith("ok: 2 tenants")


def test_config_check_refuses_a_log_level_run_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    assert cli.main(["config", "check"]) == 2
    assert capsys.readouterr().err.startswith("contactrouter: environment: LOG_LEVEL: must be one of ")


def test_config_check_refuses_a_flag_that_is_neither_on_nor_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "enabled")
    assert cli.main(["config", "check"]) == 2
    assert "REDIS_CLUSTER: 'enabled' is neither on" in capsys.readouterr().err


def test_an_unknown_tenant_is_one_line_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["webchat", "sign", "--tenant", "initech", "--id", "42"]) == 2
    assert capsys.readouterr().err == "contactrouter: no tenant 'initech' (known: acme, globex)\n"


def test_a_refused_request_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*STAFFING, "--target-sl", "100"]) == 2
    assert capsys.readouterr().err == "contactrouter: the service-level target must be above 0% and below 100%\n"


def test_a_value_error_from_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a bug, not the operator's mistake")

    monkeypatch.setattr(staffing, "agents_needed", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(STAFFING)


def test_config_check_refuses_half_a_tls_certificate_as_the_smtp_process_would(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMTP_TLS_CERT", "/etc/ssl/mx.pem")
    monkeypatch.delenv("SMTP_TLS_KEY", raising=False)
    assert cli.main(["config", "check"]) == 2
    assert "SMTP_TLS_CERT and SMTP_TLS_KEY go together" in capsys.readouterr().err


def test_config_check_passes_with_a_warning_of_an_agent_who_could_never_answer_a_call(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.router.test_config import ACCOUNT, CALLS

    path = tmp_path / "deploy.toml"
    path.write_text(CALLS.format(twilio=ACCOUNT))
    monkeypatch.setenv("ACME_TWILIO_TOKEN", "token")
    assert cli.main(["--config", str(path), "config", "check"]) == 0
    ok, warning = capsys.readouterr().out.splitlines()
    assert ok == "ok: 1 tenants, 1 queues, 3 agents"
    assert warning.startswith(
        "warning: tenant acme: agent zoe can take voice calls but has neither a phone nor the softphone"
    )


def test_config_check_warns_when_a_tenant_sends_faxes_and_the_cjk_font_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    from channels.fax import fonts

    monkeypatch.setattr(fonts, "CJK_PAIRS", ((tmp_path / "none.ttc", tmp_path / "none-bold.ttc"),))
    assert cli.main(["config", "check"]) == 0  # a warning, not a refusal: Latin text still prints
    out = capsys.readouterr().out
    assert "warning: tenants acme send faxes but Noto Sans CJK is not installed" in out
    assert "(install Debian's fonts-noto-cjk)" in out


def test_config_check_says_nothing_of_fax_fonts_when_they_are_installed(capsys: pytest.CaptureFixture[str]) -> None:
    from channels.fax import fonts

    if fonts.cjk("ja") is None or fonts.latin() is None:
        pytest.skip("DejaVu Sans or Noto Sans CJK is not installed")
    assert cli.main(["config", "check"]) == 0
    assert "fax" not in capsys.readouterr().out
