"""``xrouter db`` through its ``run(args, settings)`` entry point, in process."""

from __future__ import annotations

import argparse

import pytest

from xrouter.settings import Settings
from xrouter.storage import cli
from xrouter.storage.migrate import head_revision


def _run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xrouter db")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv), settings)


def test_current_then_upgrade(empty_database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=empty_database_url)

    assert _run(settings, "current") == 0
    assert capsys.readouterr().out.startswith("none (latest is")

    assert _run(settings, "upgrade") == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out

    assert _run(settings, "current") == 0
    assert capsys.readouterr().out.strip() == head_revision()


def test_unreachable_database_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url="postgresql+asyncpg://xrouter:secret@127.0.0.1:1/none")

    assert _run(settings, "current") == 1

    error = capsys.readouterr().err
    assert error.startswith("error: database postgresql+asyncpg://xrouter:***@127.0.0.1:1/none")
    assert "secret" not in error
