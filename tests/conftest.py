"""Shared fixtures: throwaway PostgreSQL databases, Redis, and a migrated database per test.

PostgreSQL and Redis tests are skipped when the server is unreachable, unless
``XROUTER_REQUIRE_SERVICES=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis.asyncio
import redis.exceptions
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as sqlalchemy_async_engine

from tests.gateway_processes import reset_schema
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade_async

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _unavailable(service: str, error: BaseException) -> NoReturn:
    message = f"{service} unavailable: {type(error).__name__}: {error}"
    if os.environ.get("XROUTER_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# Errors that mean "the server is not there", as opposed to a bug in a test.
_UNREACHABLE = (OSError, TimeoutError, DBAPIError)


def _run_in_thread(make_coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion even when called from inside a running event loop."""
    # Session fixtures may first be requested from an async fixture, whose loop is running.
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(make_coroutine())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="xrouter-test-setup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def _run_autocommit(admin_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = sqlalchemy_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session on the PostgreSQL server, dropped afterwards."""
    admin_url = os.environ.get("XROUTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"xrouter_test_{uuid.uuid4().hex[:12]}"
    try:
        _run_in_thread(lambda: _run_autocommit(admin_url, f'CREATE DATABASE "{name}"'))
    except _UNREACHABLE as error:
        _unavailable("PostgreSQL", error)
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    _run_in_thread(lambda: _run_autocommit(admin_url, drop))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL that answered PING (database 15 by default: keep tests off real data)."""
    url = os.environ.get("XROUTER_TEST_REDIS_URL", DEFAULT_REDIS_URL)

    async def ping() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            async with asyncio.timeout(5):
                await client.ping()
        finally:
            await client.aclose()

    try:
        _run_in_thread(ping)
    except (*_UNREACHABLE, redis.exceptions.RedisError) as error:
        _unavailable("Redis", error)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables), on SQLite and on PostgreSQL in turn."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # One database per session, emptied per test: far cheaper than CREATE DATABASE each time.
    await reset_schema(url)
    return url


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A database migrated to the latest revision, on SQLite and on PostgreSQL in turn."""
    await upgrade_async(empty_database_url)
    return empty_database_url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated ``database_url``, disposed after the test."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory on the migrated ``database_url``."""
    return session_factory(engine)


# Gateway fixtures (real servers on loopback) shared by the gateway, api and CLI tests.
from tests.gateway_fixtures import (  # noqa: E402
    api_key,
    client,
    emulators,
    gateway,
    http,
    loop,
)

__all__ = ["api_key", "client", "emulators", "gateway", "http", "loop"]


# Every log record of the session is kept and searched for the secrets the tests used.
from tests import log_secrets  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    log_secrets.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log_secrets.check(session)
