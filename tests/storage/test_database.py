from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from xrouter.storage.database import DatabaseUnavailableError, create_engine, ping, redacted


async def test_ping_succeeds(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await ping(engine, timeout=5)
    finally:
        await engine.dispose()


async def test_ping_of_an_unreachable_database_raises_a_typed_error() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailableError):
            await ping(engine, timeout=5)
    finally:
        await engine.dispose()


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'x.db'}")
    try:
        async with engine.connect() as connection:
            journal = await connection.scalar(text("PRAGMA journal_mode"))
            busy = await connection.scalar(text("PRAGMA busy_timeout"))
            foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
    finally:
        await engine.dispose()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy is not None
    assert busy >= 1000


def test_redacted_hides_the_password() -> None:
    shown = redacted("postgresql+asyncpg://user:hunter2@db:5432/xrouter")
    assert "hunter2" not in shown
    assert shown.startswith("postgresql+asyncpg://user:***@db")
