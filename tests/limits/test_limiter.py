"""The limit step as the gateway uses it: admit, refuse with a named limit, settle."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.limits.clock import FakeClock
from xrouter.keys.cache import ActiveKey
from xrouter.limits.limiter import UNLIMITED, RateLimiter, RateLimitExceededError
from xrouter.limits.memory import MemoryBackend
from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.limits.policy import LimitPolicy
from xrouter.limits.redis_backend import RedisBackend
from xrouter.providers.base import ModelTarget
from xrouter.settings import RateQuota, Settings

TARGET = ModelTarget("gigachat", "GigaChat")


def make_limiter(
    tmp_path: Path, clock: FakeClock, **values: object
) -> tuple[RateLimiter, CollectorRegistry]:
    settings = Settings(key_pepper_file=tmp_path / "pepper", **values)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    tracker = QuotaTracker(5, clock=clock)
    limiter = RateLimiter(
        LimitPolicy(settings), MemoryBackend(clock=clock), LimitMetrics(registry, tracker), tracker
    )
    return limiter, registry


def key(**limits: int) -> ActiveKey:
    return ActiveKey(id="key_x", name="n", owner="bob", prefix="p", **limits)


async def settled() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_unlimited_requests_skip_the_backend(tmp_path: Path) -> None:
    limiter, registry = make_limiter(tmp_path, FakeClock())
    assert await limiter.admit(key(), TARGET, 100) is UNLIMITED
    assert UNLIMITED.headers == {}
    assert (
        registry.get_sample_value(
            "xrouter_ratelimit_checks_total", {"backend": "memory", "result": "allowed"}
        )
        is None
    )


async def test_refusal_names_the_limit_and_says_when_to_retry(tmp_path: Path) -> None:
    limiter, registry = make_limiter(tmp_path, FakeClock())
    admission = await limiter.admit(key(rpm=2), TARGET, 10)
    assert admission.headers["x-ratelimit-remaining-requests"] == "1"
    await limiter.admit(key(rpm=2), TARGET, 10)

    with pytest.raises(RateLimitExceededError) as caught:
        await limiter.admit(key(rpm=2), TARGET, 10)
    error = caught.value
    assert error.status == 429
    assert error.error_type == "requests"
    assert error.code == "rate_limit_exceeded"
    assert "requests per minute (RPM) of key key_x" in error.message
    assert "Limit 2, Used 2" in error.message
    assert error.headers["retry-after"] == "30"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-limit-requests"] == "2"
    labels = {"scope": "key", "limit": "rpm"}
    assert registry.get_sample_value("xrouter_ratelimit_rejections_total", labels) == 1
    checks = {"backend": "memory", "result": "rejected"}
    assert registry.get_sample_value("xrouter_ratelimit_checks_total", checks) == 1


async def test_a_request_larger_than_a_token_limit_is_refused_without_retry_after(
    tmp_path: Path,
) -> None:
    limiter, _ = make_limiter(tmp_path, FakeClock(), rate_limit_user_tpm=1000)
    with pytest.raises(RateLimitExceededError) as caught:
        await limiter.admit(key(), TARGET, 1001)
    assert caught.value.error_type == "tokens"
    assert "Request too large for tokens per minute (TPM) of user bob" in caught.value.message
    assert "retry-after" not in caught.value.headers


async def test_settling_replaces_the_estimate_with_the_real_usage(tmp_path: Path) -> None:
    limiter, _ = make_limiter(tmp_path, FakeClock())
    first = await limiter.admit(key(tpm=1000), TARGET, 600)
    first.settle(100)
    first.settle(100)  # settling twice changes nothing
    await settled()
    second = await limiter.admit(key(tpm=1000), TARGET, 800)
    assert second.headers["x-ratelimit-remaining-tokens"] == "100"
    second.settle(950)  # more than reserved: the difference is charged
    await settled()
    with pytest.raises(RateLimitExceededError):
        await limiter.admit(key(tpm=1000), TARGET, 1)


async def test_a_failed_request_is_refunded_so_its_retry_is_not_charged_twice(
    tmp_path: Path,
) -> None:
    limiter, _ = make_limiter(
        tmp_path, FakeClock(), rate_limit_providers={"gigachat": RateQuota(rpm=1, tpm=500)}
    )
    failed = await limiter.admit(key(), TARGET, 400)
    failed.settle(None, refund=True)
    await settled()
    retry = await limiter.admit(key(), TARGET, 400)
    assert retry.headers["x-ratelimit-remaining-requests"] == "0"
    assert retry.headers["x-ratelimit-remaining-tokens"] == "100"
    retry.settle(None)  # unknown usage: the reservation stands
    await settled()
    with pytest.raises(RateLimitExceededError):
        await limiter.admit(key(), TARGET, 1)
    await limiter.close()


@pytest.mark.redis
async def test_settlements_that_end_together_reach_redis_in_one_call(
    tmp_path: Path, redis_url: str
) -> None:
    clock = FakeClock(now=1_700_000_000.0)
    calls: list[float] = []
    six_calls = asyncio.Event()

    def observe(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 6:
            six_calls.set()

    backend = RedisBackend(aioredis.from_url(redis_url), 1.0, observe_latency=observe, clock=clock)
    settings = Settings(key_pepper_file=tmp_path / "pepper")
    tracker = QuotaTracker(5, clock=clock)
    registry = CollectorRegistry()
    limiter = RateLimiter(LimitPolicy(settings), backend, LimitMetrics(registry, tracker), tracker)
    subject = ActiveKey(id=f"key_{uuid.uuid4().hex}", name="n", owner="bob", prefix="p", tpm=10_000)
    try:
        admissions = [await limiter.admit(subject, TARGET, 1000) for _ in range(5)]
        assert len(calls) == 5
        for admission in admissions:
            admission.settle(100)  # each returns 900 of its 1000 reserved tokens
        async with asyncio.timeout(5):
            await six_calls.wait()
        await asyncio.sleep(0.05)
        assert len(calls) == 6  # five settlements, one round trip
        after = await limiter.admit(subject, TARGET, 1000)
        assert after.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 5 * 100 - 1000)
    finally:
        await limiter.close()
