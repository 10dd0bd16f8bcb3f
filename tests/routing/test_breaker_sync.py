"""Breaker transitions shared between instances through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis

from xrouter.routing.breaker import BreakerBoard, BreakerPolicy, BreakerState
from xrouter.routing.breaker_sync import REDIS_CHANNEL, REDIS_STATES, BreakerSync

pytestmark = pytest.mark.redis
POLICY = BreakerPolicy(min_requests=2, failure_ratio=0.5, open_seconds=30)
TARGET = "gigachat/GigaChat-2-Max"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.from_url(redis_url)
    await connection.delete(REDIS_STATES)
    yield connection
    await connection.delete(REDIS_STATES)
    await connection.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the other instance never learnt the transition")


async def test_instances_open_and_close_together(client: redis.Redis) -> None:
    clock = Clock()
    first, second = BreakerBoard(POLICY), BreakerBoard(POLICY, clock=clock)
    syncs = [BreakerSync(first, client, 30), BreakerSync(second, client, 30)]
    for sync in syncs:
        await sync.start()
    try:
        await asyncio.sleep(0.2)  # both subscribed
        first.record(TARGET, False)
        first.record(TARGET, False)
        assert first.state(TARGET) is BreakerState.OPEN
        await until(lambda: second.state(TARGET) is BreakerState.OPEN)
        _, until_first = first.states()[TARGET]
        _, until_second = second.states()[TARGET]
        assert until_first is not None
        assert until_second is not None
        assert abs(until_first - until_second) < 1.0
        # A successful probe on the second instance closes the breaker everywhere.
        clock.now += 31  # due for a probe on the second instance
        assert second.acquire(TARGET)
        second.record(TARGET, True)
        await until(lambda: first.state(TARGET) is BreakerState.CLOSED)
    finally:
        for sync in syncs:
            await sync.close()


async def test_a_late_instance_reads_the_latest_state(client: redis.Redis) -> None:
    first = BreakerBoard(POLICY)
    sync = BreakerSync(first, client, 30)
    await sync.start()
    try:
        first.record(TARGET, False)
        first.record(TARGET, False)
        await asyncio.sleep(0.3)  # published
        late = BreakerBoard(POLICY)
        late_sync = BreakerSync(late, client, 30)
        await late_sync.poll()
        assert late.state(TARGET) is BreakerState.OPEN
        # Its own echo and garbage on the channel change nothing.
        await client.publish(REDIS_CHANNEL, "not a transition")
        late_sync.apply(TARGET, f"closed {time.time() - 3600} 0 other")
        assert late.state(TARGET) is BreakerState.OPEN  # older than what it knows
    finally:
        await sync.close()
