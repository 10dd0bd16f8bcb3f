"""Fixtures of the key tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.keys.cli_runner import PEPPER
from xrouter.settings import Settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for running ``xrouter keys`` against the test database."""
    return Settings(
        database_url=database_url, key_pepper=PEPPER, key_pepper_file=tmp_path / "unused"
    )
