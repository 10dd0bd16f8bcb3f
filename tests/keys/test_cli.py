"""``xrouter keys`` through its ``run(args, settings)`` entry point, in process.

The ``xrouter`` console script is wired up in ``xrouter/cli.py``; these tests drive the same
argparse setup and ``run`` function it calls, so they need no installed script.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.keys.cli_runner import PEPPER, run_keys_cli
from xrouter.keys.format import is_well_formed
from xrouter.keys.hashing import KeyHasher
from xrouter.settings import Settings


def test_create_json_list_revoke(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keys_cli(settings, "create", "--name", "x", "--json") == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"id", "key", "name"}
    assert created["name"] == "x"
    assert is_well_formed(created["key"])

    assert run_keys_cli(settings, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["id"], k["name"], k["active"]) for k in listed] == [(created["id"], "x", True)]

    assert run_keys_cli(settings, "revoke", created["id"]) == 0
    assert created["id"] in capsys.readouterr().out

    assert run_keys_cli(settings, "list") == 0
    table = capsys.readouterr().out
    assert created["id"] in table
    assert "revoked" in table
    digest = KeyHasher(PEPPER.encode()).digest(created["key"])
    assert created["key"] not in table
    assert digest not in table


def test_create_prints_the_key_once_and_never_the_hash(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_keys_cli(settings, "create", "--name", "laptop", "--owner", "alice") == 0
    output = capsys.readouterr()
    key = output.out.strip()
    assert is_well_formed(key)
    assert "cannot be shown again" in output.err
    digest = KeyHasher(PEPPER.encode()).digest(key)
    assert digest not in output.out + output.err

    assert run_keys_cli(settings, "list", "--json") == 0
    listing = capsys.readouterr().out
    assert key not in listing
    assert digest not in listing
    assert json.loads(listing)[0]["owner"] == "alice"


def test_revoke_unknown_id_is_a_clear_error(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_keys_cli(settings, "revoke", "key_nosuchkey000000") == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert "key_nosuchkey000000" in error


def test_embedded_database_is_migrated_on_first_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
        key_pepper=None,
        key_pepper_file=tmp_path / "xrouter.pepper",
    )
    assert run_keys_cli(settings, "create", "--name", "first", "--json") == 0
    assert json.loads(capsys.readouterr().out)["name"] == "first"
    assert (tmp_path / "xrouter.pepper").is_file()


def test_empty_name_is_refused(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keys_cli(settings, "create", "--name", " ") == 1
    assert "must not be empty" in capsys.readouterr().err


def test_create_with_limits_then_update_them(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_keys_cli(settings, "create", "--name", "lim", "--rpm", "60", "--tpm", "5000", "--json")
        == 0
    )
    key_id = json.loads(capsys.readouterr().out)["id"]

    assert run_keys_cli(settings, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)[0]
    assert (listed["rpm"], listed["tpm"], listed["tpd"]) == (60, 5000, None)

    assert run_keys_cli(settings, "update", key_id, "--tpm", "default", "--tpd", "100000") == 0
    assert "rpm=60 tpd=100000" in capsys.readouterr().out

    assert run_keys_cli(settings, "list") == 0
    table = capsys.readouterr().out
    assert "LIMITS" in table
    assert "rpm=60 tpd=100000" in table


def test_bad_limits_are_clear_errors(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_keys_cli(settings, "create", "--name", "x", "--rpm", "0") == 1
    assert "rpm limit must be between 1" in capsys.readouterr().err
    assert run_keys_cli(settings, "update", "key_nosuchkey000000", "--rpm", "3") == 1
    assert "key_nosuchkey000000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_keys_cli(settings, "update", "key_nosuchkey000000", "--rpm", "lots")
    assert "expected a number or 'default'" in capsys.readouterr().err
