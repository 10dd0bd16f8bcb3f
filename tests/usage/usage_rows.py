"""Counting a key's usage records straight from the database, for tests that watch them
arrive from outside the gateway (another process, or a gateway on its own loop)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.models import UsageRecord


def usage_rows(database_url: str, key_id: str) -> int:
    """How many usage records of ``key_id`` the database at ``database_url`` holds (called
    where no event loop runs)."""

    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                query = select(func.count()).where(UsageRecord.key_id == key_id)
                return int((await session.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())
