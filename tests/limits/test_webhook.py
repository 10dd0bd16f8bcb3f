"""Quota notifications to a real HTTP receiver, deduplicated across instances by Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from xrouter.limits.metrics import Crossing, LimitMetrics, QuotaTracker
from xrouter.limits.policy import Limit
from xrouter.limits.webhook import QuotaWebhook


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the condition is another task's side effect
            await asyncio.sleep(0.01)


async def test_each_crossing_is_posted_off_the_request_path(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    metrics = LimitMetrics(registry, QuotaTracker(0))
    limit = Limit("key", "key_abc", "tpd", 1000)
    async with aiohttp.ClientSession() as session:
        webhook = QuotaWebhook(receiver.url, session, metrics)
        webhook.start()
        webhook.offer(Crossing(limit, 0.8, 150))
        webhook.offer(Crossing(limit, 1.0, 0))
        await wait_for(lambda: len(receiver.events) == 2)
        receiver.status = 500
        webhook.offer(Crossing(limit, 0.8, 100))
        await wait_for(
            lambda: registry.get_sample_value(
                "xrouter_ratelimit_webhooks_total", {"threshold": "0.8", "result": "failed"}
            )
        )
        await webhook.close()
    first = receiver.events[0]
    assert first["type"] == "xrouter.quota.threshold"
    assert first["threshold_percent"] == 80
    assert (first["scope"], first["subject"], first["limit"]) == ("key", "key_abc", "tpd")
    assert (first["limit_value"], first["remaining"], first["period_seconds"]) == (1000, 150, 86400)
    assert first["at"].endswith("Z")
    assert receiver.events[1]["threshold_percent"] == 100
    sent = {"threshold": "1", "result": "sent"}
    assert registry.get_sample_value("xrouter_ratelimit_webhooks_total", sent) == 1


@pytest.mark.redis
async def test_instances_sharing_redis_notify_once(receiver: Receiver, redis_url: str) -> None:
    limit = Limit("key", f"key_{uuid.uuid4().hex[:8]}", "rpm", 10)
    clients = [aioredis.from_url(redis_url) for _ in range(3)]
    async with aiohttp.ClientSession() as session:
        hooks = [
            QuotaWebhook(
                receiver.url, session, LimitMetrics(CollectorRegistry(), QuotaTracker(0)), client
            )
            for client in clients
        ]
        for hook in hooks:
            hook.start()
            hook.offer(Crossing(limit, 1.0, 0))
        await asyncio.sleep(0.3)
        for hook in hooks:
            await hook.close()
    for client in clients:
        await client.aclose()
    assert len(receiver.events) == 1
