"""The Lua scripts against a real Redis: the same answers as the in-process reference, exact
under concurrency, one slot per request, and bounded failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from tests.limits.clock import FakeClock
from tests.limits.redis_server import PrivateRedis
from xrouter.limits.backend import BackendUnavailableError
from xrouter.limits.memory import MemoryBackend
from xrouter.limits.pipelined_redis import PipelinedRedis
from xrouter.limits.policy import Limit
from xrouter.limits.redis_backend import LimiterClient, RedisBackend

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture(params=["redis-py", "pipelined"])
async def backend_client(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[LimiterClient]:
    """The backend's client: redis-py's (Sentinel, Cluster), or the pipelined one (a single
    server), which packs the scripts' arguments itself."""
    connection: LimiterClient = (
        aioredis.from_url(redis_url)
        if request.param == "redis-py"
        else PipelinedRedis.from_url(redis_url)
    )
    yield connection
    await connection.aclose()


def fresh_limits(*specs: tuple[str, int]) -> list[Limit]:
    subject = f"test-{uuid.uuid4().hex}"
    return [Limit("key", subject, name, value) for name, value in specs]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "steps",
    [
        # (seconds to advance, request cost in tokens, settle change)
        [(0, 1, 0)] * 12 + [(6, 1, 0), (0.5, 1, 0), (6, 1, 0)],
        [(0, 400, -300), (0, 400, 0), (0, 400, 0), (0, 400, 200), (1, 10, 0), (30, 900, 0)],
        [(59.9, 300, 0)] * 4 + [(0.2, 300, 0), (18, 300, 0), (0.01, 1, -1000)],
    ],
)
async def test_the_script_matches_the_reference(
    backend_client: LimiterClient, steps: list[tuple[float, int, int]]
) -> None:
    limits = fresh_limits(("rpm", 10), ("tpm", 1000))
    clock = FakeClock(now=1_700_000_000.0)
    reference = MemoryBackend(clock=clock)
    backend = RedisBackend(backend_client, 1.0, clock=clock)
    for advance, tokens, change in steps:
        clock.advance(advance)
        expected = await reference.acquire(limits, [1, tokens])
        actual = await backend.acquire(limits, [1, tokens])
        assert actual.allowed == expected.allowed
        for got, want in zip(actual.states, expected.states, strict=True):
            assert got.remaining == want.remaining
            assert got.reset_after == pytest.approx(want.reset_after, abs=0.001)
            assert got.retry_after == pytest.approx(want.retry_after, abs=0.001)
        if change and expected.allowed:
            await reference.adjust(limits, [0, change])
            await backend.adjust(limits, [0, change])


async def test_no_double_burst_at_a_minute_edge(backend_client: LimiterClient) -> None:
    (limit,) = fresh_limits(("rpm", 10))
    clock = FakeClock(now=1_700_000_039.9)  # 0.1 s before a whole minute
    backend = RedisBackend(backend_client, 1.0, clock=clock)
    first = [await backend.acquire([limit], [1]) for _ in range(10)]
    clock.now += 0.2  # across the minute edge
    second = [await backend.acquire([limit], [1]) for _ in range(10)]

    assert all(decision.allowed for decision in first)
    assert not any(decision.allowed for decision in second)
    assert second[0].states[0].retry_after == pytest.approx(5.8, abs=0.01)


async def test_concurrent_clients_get_exactly_the_limit(redis_url: str) -> None:
    limits = fresh_limits(("rpm", 25), ("tpm", 2500))
    clients = [aioredis.from_url(redis_url) for _ in range(4)]
    try:
        backends = [RedisBackend(client, 2.0) for client in clients]
        decisions = await asyncio.gather(
            *(backends[index % 4].acquire(limits, [1, 50]) for index in range(100))
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sum(decision.allowed for decision in decisions) == 25


async def test_a_flushed_script_cache_is_refilled(
    client: aioredis.Redis, backend_client: LimiterClient
) -> None:
    limits = fresh_limits(("rpm", 5))
    backend = RedisBackend(backend_client, 1.0)
    assert (await backend.acquire(limits, [1])).allowed
    await client.script_flush()
    assert (await backend.acquire(limits, [1])).allowed
    await client.script_flush()
    await backend.adjust(limits, [-2])
    assert (await backend.acquire(limits, [1])).states[0].remaining == 4


async def test_keys_of_all_scopes_share_one_cluster_slot(client: aioredis.Redis) -> None:
    limits = [
        Limit("key", "key_abc", "rpm", 1),
        Limit("user", "alice@example.com", "tpd", 1),
        Limit("model", "gigachat/GigaChat-Pro", "tpm", 1),
        Limit("provider", "yandex", "rpm", 1),
        Limit("user", "weird {owner} name", "rpm", 1),
    ]
    assert len({key_slot(limit.storage_key.encode()) for limit in limits}) == 1
    # And the keys expire once the limit is full again: nothing is left behind for ever.
    (limit,) = fresh_limits(("rpm", 60))
    await RedisBackend(client, 1.0).acquire([limit], [1])
    assert 0 < await client.pttl(limit.storage_key) <= 2000


async def test_a_silent_redis_is_a_timeout(silent_server: int) -> None:
    client = aioredis.Redis(port=silent_server)
    try:
        backend = RedisBackend(client, 0.02)
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.acquire(fresh_limits(("rpm", 1)), [1])
    finally:
        await client.aclose()
    assert caught.value.reason == "timeout"


async def test_a_stopped_redis_is_a_connection_error(private_redis: PrivateRedis) -> None:
    client = aioredis.from_url(private_redis.url)
    try:
        backend = RedisBackend(client, 1.0)
        assert (await backend.acquire(fresh_limits(("rpm", 1)), [1])).allowed
        private_redis.stop()
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.acquire(fresh_limits(("rpm", 1)), [1])
    finally:
        await client.aclose()
    assert caught.value.reason == "connection"
