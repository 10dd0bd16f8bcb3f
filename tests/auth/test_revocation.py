from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.revocation import Denylist, RevocationFeed


def test_denylist_forgets_expired_entries() -> None:
    now = [1000.0]
    denylist = Denylist(clock=lambda: now[0])
    denylist.add("at_live", 1010)
    denylist.add("at_dead", 999)
    assert "at_live" in denylist
    assert "at_dead" not in denylist
    now[0] = 1011
    denylist.prune()
    assert len(denylist) == 0


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(redis_url, socket_timeout=2)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_redis_carries_revocations_between_instances(
    sessions: async_sessionmaker[AsyncSession], redis_client: redis.Redis
) -> None:
    feeds = [RevocationFeed(sessions, Denylist(), redis_client, poll_seconds=30) for _ in range(2)]
    for feed in feeds:
        await feed.start()
    try:
        jti = f"at_{time.time_ns()}"
        await feeds[0].announce([(jti, time.time() + 60)])
        assert jti in feeds[0].denylist
        for _ in range(200):  # two seconds at most
            if jti in feeds[1].denylist:
                break
            await asyncio.sleep(0.01)
        # Through pub/sub: the 30-second polls never ran.
        assert jti in feeds[1].denylist
        # A late starter reads the denylist Redis keeps.
        late = RevocationFeed(sessions, Denylist(), redis_client, poll_seconds=30)
        await late.start()
        assert jti in late.denylist
        await late.close()
    finally:
        for feed in feeds:
            await feed.close()
