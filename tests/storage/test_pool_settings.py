"""PostgreSQL pools sized by configuration: what each worker keeps and may add under load."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool

from xrouter.settings import ConfigurationError, load_settings
from xrouter.storage.database import create_engine


def test_settings_default_and_validate_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.database_pool_size, settings.database_max_overflow) == (10, 20)
    monkeypatch.setenv("XROUTER_DATABASE_POOL_SIZE", "4")
    monkeypatch.setenv("XROUTER_DATABASE_MAX_OVERFLOW", "0")
    settings = load_settings()
    assert (settings.database_pool_size, settings.database_max_overflow) == (4, 0)
    monkeypatch.setenv("XROUTER_DATABASE_POOL_SIZE", "0")
    with pytest.raises(ConfigurationError, match="XROUTER_DATABASE_POOL_SIZE"):
        load_settings()


@pytest.mark.postgres
async def test_a_worker_opens_at_most_pool_size_plus_overflow(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=2, max_overflow=1)
    try:
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 2
        async with AsyncExitStack() as stack:
            connections = [await stack.enter_async_context(engine.connect()) for _ in range(3)]
            for connection in connections:
                assert (await connection.execute(text("SELECT 1"))).scalar() == 1
            assert pool.checkedout() == 3
            # A fourth connection waits for one of the three (bounded by pool_timeout).
            pool._timeout = 0.2  # the configured 10 s would only slow the test down
            with pytest.raises(PoolTimeoutError):
                async with asyncio.timeout(5), engine.connect():
                    pass
        # Back in the pool: the two kept ones stay open, the overflow one is closed.
        assert pool.checkedin() == 2
    finally:
        await engine.dispose()
