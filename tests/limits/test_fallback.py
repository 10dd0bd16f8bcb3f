"""The failure policy against a real Redis that is stopped and started again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.limits.clock import FakeClock
from tests.limits.redis_server import PrivateRedis
from xrouter.limits.fallback import FailoverBackend, RateLimiterUnavailableError
from xrouter.limits.memory import MemoryBackend
from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.limits.policy import Limit
from xrouter.limits.redis_backend import RedisBackend

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.from_url(private_redis.url)
    yield connection
    await connection.aclose()


def make_failover(
    client: aioredis.Redis, policy: str, clock: FakeClock
) -> tuple[FailoverBackend, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = LimitMetrics(registry, QuotaTracker(0))
    backend = FailoverBackend(
        RedisBackend(client, 0.5),
        MemoryBackend(name="fallback", share=2),
        policy,  # type: ignore[arg-type]
        retry_seconds=1.0,
        metrics=metrics,
        clock=clock,
    )
    return backend, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_fail_open_uses_the_local_share_and_recovers(
    client: aioredis.Redis, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    backend, registry = make_failover(client, "open", clock)
    limit = Limit("key", uuid.uuid4().hex, "rpm", 10)

    assert (await backend.acquire([limit], [1])).source == "redis"
    private_redis.stop()
    with caplog.at_level(logging.WARNING, logger="xrouter.limits.fallback"):
        decisions = [await backend.acquire([limit], [1]) for _ in range(8)]
    # Each of the 2 instances enforces half of the limit while Redis is down.
    assert [decision.source for decision in decisions] == ["fallback"] * 8
    assert sum(decision.allowed for decision in decisions) == 5
    assert value(registry, "xrouter_ratelimit_degraded") == 1
    assert value(registry, "xrouter_ratelimit_redis_errors_total", reason="connection") == 1
    assert len([r for r in caplog.records if "Redis unavailable" in r.message]) == 1

    private_redis.start()
    # Until the probe is due, requests do not touch Redis.
    assert (await backend.acquire([limit], [1])).source == "fallback"
    clock.advance(1.0)
    with caplog.at_level(logging.WARNING, logger="xrouter.limits.fallback"):
        recovered = await backend.acquire([limit], [1])
    assert recovered.source == "redis"
    assert recovered.allowed  # the restarted Redis is empty
    assert value(registry, "xrouter_ratelimit_degraded") == 0
    assert any("answers again" in record.message for record in caplog.records)


async def test_failed_probes_are_counted_but_logged_once(
    client: aioredis.Redis, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    backend, registry = make_failover(client, "open", clock)
    limit = Limit("key", uuid.uuid4().hex, "rpm", 10)
    private_redis.stop()
    with caplog.at_level(logging.WARNING, logger="xrouter.limits.fallback"):
        for _ in range(3):
            await backend.acquire([limit], [1])
            clock.advance(1.0)
    assert value(registry, "xrouter_ratelimit_redis_errors_total", reason="connection") == 3
    assert len(caplog.records) == 1


async def test_fail_closed_refuses_with_503(
    client: aioredis.Redis, private_redis: PrivateRedis
) -> None:
    clock = FakeClock()
    backend, registry = make_failover(client, "closed", clock)
    limit = Limit("key", uuid.uuid4().hex, "rpm", 10)
    private_redis.stop()

    with pytest.raises(RateLimiterUnavailableError) as caught:
        await backend.acquire([limit], [1])
    assert caught.value.status == 503
    assert caught.value.headers["retry-after"] == "1"
    assert value(registry, "xrouter_ratelimit_unavailable_total") == 1

    private_redis.start()
    clock.advance(1.0)
    assert (await backend.acquire([limit], [1])).allowed


async def test_settlements_go_to_the_backend_that_decided(
    client: aioredis.Redis, private_redis: PrivateRedis
) -> None:
    clock = FakeClock()
    backend, registry = make_failover(client, "open", clock)
    limit = Limit("key", uuid.uuid4().hex, "tpm", 1000)
    private_redis.stop()
    decision = await backend.acquire([limit], [400])
    assert decision.source == "fallback"
    # The local share is 500 tokens: a refund to the fallback makes room again.
    assert not (await backend.acquire([limit], [400])).allowed
    await backend.backend_for(decision.source).adjust([limit], [-400])
    assert (await backend.acquire([limit], [400])).allowed
    # A settlement for Redis while Redis is down is dropped, and counted.
    await backend.backend_for("redis").adjust([limit], [-1])
    assert value(registry, "xrouter_ratelimit_settlements_lost_total") == 1
