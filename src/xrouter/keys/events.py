"""Telling every instance that a key changed, so a revoked or disabled key stops working
everywhere within a second.

Each instance's ``KeyCache`` polls the database every ``key_cache_refresh_seconds``. With Redis,
the instance that changes a key also publishes its id; every instance wakes its cache to
reload at once, and the poll remains as the safety net for messages lost while a subscriber
reconnects.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from xrouter.background import stop_tasks
from xrouter.keys.cache import KeyCache
from xrouter.pubsub import follow_channel
from xrouter.redis_url import RedisClient

logger = logging.getLogger(__name__)

REDIS_CHANNEL = "xrouter:keys:changed"
PUBLISH_TIMEOUT_SECONDS = 2.0


class KeyEvents:
    """Publishes key changes and (given a cache) follows other instances' changes."""

    def __init__(self, redis_client: RedisClient | None, cache: KeyCache | None = None) -> None:
        self._redis = redis_client
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Follow the channel in the background (nothing to do without Redis or a cache)."""
        if self._redis is None or self._cache is None:
            return
        cache = self._cache

        async def catch_up() -> None:
            # Changes published while this instance was not subscribed.
            cache.refresh_soon()

        self._task = asyncio.create_task(
            follow_channel(
                self._redis,
                REDIS_CHANNEL,
                lambda _: cache.refresh_soon(),
                catch_up,
                lambda: self._closing,
            ),
            name="xrouter-key-events",
        )

    async def close(self) -> None:
        self._closing = True
        await stop_tasks(self._task)
        self._task = None

    async def announce(self, subject: str) -> None:
        """Tell every instance that ``subject`` (a key id, or an owner) changed. The database
        already holds the change: a failure here only delays it to the next poll."""
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await self._redis.publish(REDIS_CHANNEL, subject)
        except (RedisError, OSError, TimeoutError):
            logger.warning("could not publish a key change to Redis", exc_info=True)
