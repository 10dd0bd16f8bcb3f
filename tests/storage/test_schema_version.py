"""The schema revision read without Alembic, and the migration run in a child process."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrouter.storage.migrate import head_revision, upgrade, upgrade_async
from xrouter.storage.schema_version import (
    database_revisions,
    is_current,
    shipped_heads,
    upgrade_in_child,
)


def test_shipped_heads_are_alembics_head() -> None:
    assert shipped_heads() == {head_revision()}


async def test_revisions_of_an_empty_then_a_migrated_database(empty_database_url: str) -> None:
    assert await database_revisions(empty_database_url) == frozenset()

    await upgrade_async(empty_database_url, "0005")
    assert await database_revisions(empty_database_url) == {"0005"}

    await upgrade_async(empty_database_url)
    assert await database_revisions(empty_database_url) == shipped_heads()


def test_only_a_database_at_the_head_is_current(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}"
    assert not is_current(url)
    upgrade(url, "0001")
    assert not is_current(url)
    upgrade(url)
    assert is_current(url)


def test_upgrade_in_child_migrates_to_the_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'xrouter.db'}"
    assert upgrade_in_child(url, "warning")
    assert is_current(url)
    assert upgrade_in_child(url, "warning")  # nothing left to do is not a failure


def test_upgrade_in_child_reports_a_failure(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "xrouter.db").mkdir()
    assert not upgrade_in_child(f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}", "warning")
    assert "unable to open database file" in capfd.readouterr().err
