"""Async engines and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 15_000
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 20


class DatabaseUnavailableError(Exception):
    """The database did not answer a readiness probe in time."""


def create_engine(
    url: str,
    *,
    pool_size: int = POSTGRES_POOL_SIZE,
    max_overflow: int = POSTGRES_MAX_OVERFLOW,
) -> AsyncEngine:
    """An async engine tuned for the database behind ``url``.

    SQLite gets WAL (readers never block the writer), foreign keys and a busy timeout so a
    second process (the ``xrouter keys`` command) waits for a lock instead of failing.
    PostgreSQL gets a bounded pool whose connections are checked before use: ``pool_size``
    kept open, up to ``max_overflow`` more under load.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    return _create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "xrouter"}},
    )


def _sqlite_engine(url: str, database: str | None) -> AsyncEngine:
    in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
    if not in_memory and database is not None:
        # The embedded default should work on first run, even for a path like ./data/x.db.
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = _create_async_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine``; objects stay readable after commit (no lazy reloads)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine, timeout: float) -> None:
    """Run ``SELECT 1``; raise ``DatabaseUnavailableError`` if that fails or takes too long."""
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError as error:
        raise DatabaseUnavailableError(f"database did not answer within {timeout}s") from error
    except (SQLAlchemyError, OSError) as error:
        raise DatabaseUnavailableError(f"database unavailable: {error}") from error


def redacted(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
