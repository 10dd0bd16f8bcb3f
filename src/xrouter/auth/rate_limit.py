"""Failed sign-in attempts, limited per account and per client IP.

Only failures count, in a fixed window: with Redis the counters are shared by every instance,
otherwise each process keeps its own. A successful sign-in clears the account's counter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from xrouter.redis_url import RedisClient

logger = logging.getLogger(__name__)

_PREFIX = "xrouter:login:"
MAX_TRACKED = 100_000


def _key(kind: str, value: str) -> str:
    # Hashed: emails and addresses do not sit in Redis in clear.
    return _PREFIX + kind + ":" + hashlib.sha256(value.encode()).hexdigest()[:32]


class LoginRateLimiter:
    """``retry_after`` says whether to refuse a sign-in; ``failed`` and ``succeeded`` count."""

    def __init__(
        self,
        *,
        per_account: int,
        per_ip: int,
        window_seconds: float,
        redis_client: RedisClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"account": per_account, "ip": per_ip}
        self._window = window_seconds
        self._redis = redis_client
        self._clock = clock
        # key -> (window start, failures)
        self._local: dict[str, tuple[float, int]] = {}

    async def retry_after(self, account: str, ip: str) -> float | None:
        """Seconds until another attempt is allowed, or None if one is allowed now."""
        waits = []
        for kind, value in (("account", account.lower()), ("ip", ip)):
            count, ttl = await self._read(_key(kind, value))
            if count >= self._limits[kind]:
                waits.append(ttl)
        return max(waits) if waits else None

    async def failed(self, account: str, ip: str) -> None:
        for kind, value in (("account", account.lower()), ("ip", ip)):
            await self._increment(_key(kind, value))

    async def succeeded(self, account: str) -> None:
        key = _key("account", account.lower())
        self._local.pop(key, None)
        if self._redis is not None:
            try:
                async with asyncio.timeout(2):
                    await self._redis.delete(key)
            except (RedisError, OSError, TimeoutError):
                logger.warning("login limiter: Redis unreachable", exc_info=True)

    async def _read(self, key: str) -> tuple[int, float]:
        if self._redis is not None:
            try:
                async with asyncio.timeout(2):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.get(key)
                        pipe.pttl(key)
                        value, ttl_ms = await pipe.execute()
                return int(value or 0), max(ttl_ms, 0) / 1000
            except (RedisError, OSError, TimeoutError):
                logger.warning("login limiter: Redis unreachable; using local counts")
        started, count = self._local.get(key, (0.0, 0))
        remaining = started + self._window - self._clock()
        return (count, remaining) if remaining > 0 else (0, 0.0)

    async def _increment(self, key: str) -> None:
        if self._redis is not None:
            try:
                async with asyncio.timeout(2):
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.incr(key)
                        pipe.expire(key, math.ceil(self._window), nx=True)
                        await pipe.execute()
                return
            except (RedisError, OSError, TimeoutError):
                logger.warning("login limiter: Redis unreachable; counting locally")
        now = self._clock()
        started, count = self._local.get(key, (now, 0))
        if started + self._window <= now:
            started, count = now, 0
        if len(self._local) >= MAX_TRACKED:
            self._local = {k: v for k, v in self._local.items() if v[0] + self._window > now}
        self._local[key] = (started, count + 1)
