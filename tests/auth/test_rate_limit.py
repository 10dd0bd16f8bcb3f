from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from xrouter.auth.rate_limit import LoginRateLimiter


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_in_process_limits_per_account_and_per_ip() -> None:
    clock = Clock()
    limiter = LoginRateLimiter(per_account=2, per_ip=3, window_seconds=60, clock=clock)
    assert await limiter.retry_after("a@x", "10.0.0.1") is None
    await limiter.failed("a@x", "10.0.0.1")
    await limiter.failed("A@X", "10.0.0.1")  # the same account, whatever the case
    wait = await limiter.retry_after("a@x", "10.0.0.2")
    assert wait is not None
    assert 0 < wait <= 60
    assert await limiter.retry_after("b@x", "10.0.0.1") is None
    await limiter.failed("b@x", "10.0.0.1")
    assert await limiter.retry_after("c@x", "10.0.0.1") is not None  # the address is spent
    clock.now += 61
    assert await limiter.retry_after("a@x", "10.0.0.1") is None


async def test_success_clears_the_account() -> None:
    limiter = LoginRateLimiter(per_account=2, per_ip=100, window_seconds=60)
    await limiter.failed("a@x", "ip")
    await limiter.succeeded("a@x")
    await limiter.failed("a@x", "ip")
    assert await limiter.retry_after("a@x", "ip") is None


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_redis_counters_are_shared_by_instances(redis_client: redis.Redis) -> None:
    account, address = f"{uuid.uuid4().hex}@x", uuid.uuid4().hex
    first = LoginRateLimiter(per_account=2, per_ip=10, window_seconds=30, redis_client=redis_client)
    second = LoginRateLimiter(
        per_account=2, per_ip=10, window_seconds=30, redis_client=redis_client
    )
    await first.failed(account, address)
    await second.failed(account, address)
    wait = await first.retry_after(account, "elsewhere")
    assert wait is not None
    assert 0 < wait <= 30
    await second.succeeded(account)
    assert await first.retry_after(account, address) is None
