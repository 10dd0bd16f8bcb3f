"""Revoked access tokens: a denylist of ``jti`` values that every instance holds in memory.

An entry lives until the token would have expired anyway. The database (``revoked_at`` of
``oauth_access_tokens``) is the record; an instance learns about revocations made elsewhere:

* with Redis: at once, through a pub/sub channel; the denylist is also kept in Redis as a sorted
  set scored by expiry, whose version counter every instance polls twice a second, as a safety
  net for messages lost while a subscriber reconnects;
* from the database, by polling ``revoked_at`` (every ``poll_seconds`` without Redis, every
  ``DATABASE_POLL_WITH_REDIS_SECONDS`` with it, which also covers a Redis that lost its data).

Checking a token is a dictionary lookup: the request path does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.background import stop_tasks
from xrouter.pubsub import follow_channel
from xrouter.redis_url import RedisClient
from xrouter.storage.models import AccessTokenRecord, utc_now

logger = logging.getLogger(__name__)

# One hash tag for both keys: they change in one transaction, which on a Redis Cluster needs
# them on one slot.
REDIS_DENYLIST = "xrouter:oauth:{revoked}"
REDIS_VERSION = "xrouter:oauth:{revoked}:version"
REDIS_CHANNEL = "xrouter:oauth:revocations"
DATABASE_POLL_WITH_REDIS_SECONDS = 10.0
# Re-read a little before the newest revocation seen, for clocks that differ between instances.
OVERLAP = timedelta(seconds=5)
QUERY_TIMEOUT_SECONDS = 10.0


class Denylist:
    """``jti`` -> the Unix time the token expires; expired entries are dropped."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, float] = {}
        self._clock = clock

    def add(self, jti: str, expires_at: float) -> None:
        if expires_at > self._clock():
            self._entries[jti] = expires_at

    def __contains__(self, jti: object) -> bool:
        return jti in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self) -> None:
        now = self._clock()
        self._entries = {jti: exp for jti, exp in self._entries.items() if exp > now}


class RevocationFeed:
    """Keeps one instance's ``Denylist`` in step with revocations made on any instance."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        denylist: Denylist,
        redis_client: RedisClient | None,
        poll_seconds: float,
    ) -> None:
        self._sessions = session_factory
        self.denylist = denylist
        self._redis = redis_client
        self._poll_seconds = poll_seconds
        self._watermark: datetime | None = None
        self._redis_version: bytes | str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        """Load every revoked, unexpired token, then follow new revocations in the background."""
        await self._poll_database()
        database_every = self._poll_seconds
        if self._redis is not None:
            # An unreachable Redis must not stop the start: the database has every revocation,
            # the subscriber keeps reconnecting, and readiness reports Redis as down.
            database_every = DATABASE_POLL_WITH_REDIS_SECONDS
            try:
                await self._poll_redis()
            except (RedisError, OSError, TimeoutError) as error:
                logger.warning("Redis unreachable at start (%s); will retry", type(error).__name__)
            self._tasks.append(asyncio.create_task(self._subscribe(), name="xrouter-revocations"))
            self._tasks.append(
                asyncio.create_task(
                    self._every(self._poll_seconds, self._poll_redis), name="xrouter-denylist-poll"
                )
            )
        self._tasks.append(
            asyncio.create_task(
                self._every(database_every, self._poll_database), name="xrouter-revocation-poll"
            )
        )

    async def close(self) -> None:
        # redis-py's get_message can swallow a cancellation; the flag ends its loop regardless.
        self._closing = True
        await stop_tasks(*self._tasks)
        self._tasks.clear()

    async def announce(self, revoked: list[tuple[str, float]]) -> None:
        """Tell every instance about tokens just revoked (already recorded in the database)."""
        for jti, expires_at in revoked:
            self.denylist.add(jti, expires_at)
        if self._redis is None or not revoked:
            return
        now = time.time()
        try:
            async with asyncio.timeout(2):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zadd(REDIS_DENYLIST, {jti: expires_at for jti, expires_at in revoked})
                    pipe.zremrangebyscore(REDIS_DENYLIST, "-inf", now)
                    pipe.incr(REDIS_VERSION)
                    await pipe.execute()
                # After the transaction, not in it: a cluster transaction holds only commands
                # on its keys' slot, and a channel has none.
                for jti, expires_at in revoked:
                    await self._redis.publish(REDIS_CHANNEL, f"{jti} {expires_at}")
        except (RedisError, OSError, TimeoutError):
            # The database holds the revocation; other instances see it on their next poll.
            logger.warning("could not publish a revocation to Redis", exc_info=True)

    async def _subscribe(self) -> None:
        assert self._redis is not None

        async def catch_up() -> None:
            # Messages sent while this instance was not subscribed: read the set again.
            self._redis_version = None
            await self._poll_redis()

        await follow_channel(
            self._redis, REDIS_CHANNEL, self._apply_message, catch_up, lambda: self._closing
        )

    def _apply_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        jti, _, expires = text.partition(" ")
        with contextlib.suppress(ValueError):
            self.denylist.add(jti, float(expires))

    async def _poll_redis(self) -> None:
        assert self._redis is not None
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            version = await self._redis.get(REDIS_VERSION)
            if version is not None and version == self._redis_version:
                return
            entries: list[Any] = await self._redis.zrangebyscore(
                REDIS_DENYLIST, time.time(), "+inf", withscores=True
            )
        for member, score in entries:
            jti = member.decode() if isinstance(member, bytes) else str(member)
            self.denylist.add(jti, float(score))
        self._redis_version = version

    async def _poll_database(self) -> None:
        query = select(
            AccessTokenRecord.jti, AccessTokenRecord.expires_at, AccessTokenRecord.revoked_at
        ).where(AccessTokenRecord.revoked_at.is_not(None))
        if self._watermark is None:
            query = query.where(AccessTokenRecord.expires_at > utc_now())
        else:
            query = query.where(AccessTokenRecord.revoked_at > self._watermark - OVERLAP)
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS), self._sessions() as session:
            rows = (await session.execute(query)).all()
        newest = self._watermark or utc_now() - OVERLAP
        for jti, expires_at, revoked_at in rows:
            self.denylist.add(jti, expires_at.timestamp())
            if revoked_at is not None and revoked_at > newest:
                newest = revoked_at
        self._watermark = newest
        self.denylist.prune()

    async def _every(self, seconds: float, poll: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            await asyncio.sleep(seconds)
            try:
                await poll()
                failures = 0
            except Exception:
                failures += 1
                logger.warning(
                    "revocation poll failed (%d in a row)", failures, exc_info=failures == 1
                )
