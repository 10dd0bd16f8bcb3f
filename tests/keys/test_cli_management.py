"""``xrouter keys create/update/usage`` with the key management options."""

from __future__ import annotations

import json

import pytest

from tests.keys.cli_runner import run_keys_cli
from xrouter.settings import Settings


def _listed(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert run_keys_cli(settings, "list", "--json") == 0
    [key] = json.loads(capsys.readouterr().out)
    return dict(key)


def test_create_and_update_every_option(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["create", "--name", "ci", "--rpm", "60", "--tpm", "4000", "--tpd", "90000"]
    argv += ["--budget-rub", "150.5", "--models", "gigachat/*, yandex/yandexgpt"]
    argv += ["--expires", "2099-01-31T23:59:59+03:00", "--json"]
    assert run_keys_cli(settings, *argv) == 0
    key_id = json.loads(capsys.readouterr().out)["id"]
    listed = _listed(settings, capsys)
    assert (listed["rpm"], listed["tpm"], listed["tpd"]) == (60, 4000, 90000)
    assert listed["monthly_budget_rub"] == 150.5
    assert listed["allowed_models"] == ["gigachat/*", "yandex/yandexgpt"]
    assert listed["expires_at"] == "2099-01-31T20:59:59+00:00"
    assert listed["kind"] == "inference"

    assert (
        run_keys_cli(settings, "update", key_id, "--name", "ci-2", "--disable", "--rpm", "default")
        == 0
    )
    assert "disabled" in capsys.readouterr().out
    listed = _listed(settings, capsys)
    assert (listed["name"], listed["status"], listed["rpm"]) == ("ci-2", "disabled", None)

    update = ["update", key_id, "--enable", "--budget-rub", "none", "--models", "all"]
    assert run_keys_cli(settings, *update, "--expires", "never") == 0
    capsys.readouterr()
    listed = _listed(settings, capsys)
    assert listed["status"] == "active"
    assert listed["monthly_budget_rub"] is None
    assert listed["allowed_models"] is None
    assert listed["expires_at"] is None


def test_content_logging_is_switched_on_and_off(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_keys_cli(settings, "create", "--name", "plain", "--json") == 0
    key_id = json.loads(capsys.readouterr().out)["id"]
    assert _listed(settings, capsys)["log_content"] is False
    assert run_keys_cli(settings, "update", key_id, "--log-content") == 0
    assert "log-content" in capsys.readouterr().out
    assert _listed(settings, capsys)["log_content"] is True
    assert run_keys_cli(settings, "update", key_id, "--name", "still logged") == 0
    capsys.readouterr()
    assert _listed(settings, capsys)["log_content"] is True
    assert run_keys_cli(settings, "update", key_id, "--no-log-content") == 0
    capsys.readouterr()
    assert _listed(settings, capsys)["log_content"] is False
    assert run_keys_cli(settings, "revoke", key_id) == 0
    assert run_keys_cli(settings, "create", "--name", "logged", "--log-content", "--json") == 0
    capsys.readouterr()
    assert run_keys_cli(settings, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [key["log_content"] for key in listed] == [False, True]


def test_management_keys_are_marked(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keys_cli(settings, "create", "--name", "ops", "--management") == 0
    capsys.readouterr()
    assert _listed(settings, capsys)["kind"] == "management"
    assert run_keys_cli(settings, "list") == 0
    assert "(management)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "--name", "x", "--expires", "2099-01-01T00:00:00"],
        ["create", "--name", "x", "--expires", "tomorrow"],
        ["create", "--name", "x", "--budget-rub", "lots"],
    ],
)
def test_bad_options_are_refused_by_the_parser(settings: Settings, argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        run_keys_cli(settings, *argv)


def test_invalid_values_are_one_line_errors(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_keys_cli(settings, "create", "--name", "x", "--models", "not a model") == 1
    assert "model pattern" in capsys.readouterr().err
    assert run_keys_cli(settings, "create", "--name", "x", "--expires", "2001-01-01T00:00:00Z") == 1
    assert "future" in capsys.readouterr().err


def test_usage_table_and_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keys_cli(settings, "create", "--name", "quiet", "--json") == 0
    key_id = json.loads(capsys.readouterr().out)["id"]
    assert run_keys_cli(settings, "usage", key_id) == 0
    table = capsys.readouterr().out
    assert f"{key_id} (quiet), per day:" in table
    assert "TOTAL" in table
    assert run_keys_cli(settings, "usage", key_id, "--granularity", "hour", "--json") == 0
    series = json.loads(capsys.readouterr().out)
    assert len(series["data"]) == 48
    assert run_keys_cli(settings, "usage", "key_unknown") == 1
