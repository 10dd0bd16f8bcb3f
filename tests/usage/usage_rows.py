"""Usage test data straight in the database: counting a key's usage records, for tests that
watch them arrive from outside the gateway (another process, or a gateway on its own loop), and
adding the key that records and rollups belong to."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.models import ApiKey, UsageRecord, new_id


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


async def add_key(
    sessions: async_sessionmaker[AsyncSession],
    key_id: str,
    stamp: datetime,
    last_used_at: datetime | None = None,
) -> None:
    """An API key ``key_id`` created and updated at ``stamp``."""
    async with sessions() as session, session.begin():
        session.add(
            ApiKey(
                id=key_id,
                name="k",
                prefix="p",
                secret_hash=new_id("h"),
                created_at=stamp,
                updated_at=stamp,
                last_used_at=last_used_at,
            )
        )
