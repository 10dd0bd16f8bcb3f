"""Optional webhook: one POST when a limit's use crosses 80% and when it reaches 100%.

Notifications never delay a request: they go through a bounded queue (overflow is dropped and
counted) to one background sender. Each instance notifies once per crossing (a limit re-arms
when its use falls below half); with Redis, a ``SET NX`` per limit, threshold and period also
keeps the other instances from repeating a notification one of them already sent.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp

from xrouter.background import stop_tasks
from xrouter.limits.metrics import Crossing, LimitMetrics
from xrouter.limits.policy import REDIS_HASH_TAG
from xrouter.limits.redis_backend import LimiterClient

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
POST_TIMEOUT_SECONDS = 5.0
DEDUPE_TIMEOUT_SECONDS = 1.0


class QuotaWebhook:
    """Posts ``xrouter.quota.threshold`` events to ``url`` in the background."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        metrics: LimitMetrics,
        redis_client: LimiterClient | None = None,
    ) -> None:
        self._url = url
        self._session = session
        self._metrics = metrics
        self._redis = redis_client
        self._queue: asyncio.Queue[tuple[Crossing, datetime]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="xrouter-quota-webhook")

    async def close(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    def offer(self, crossing: Crossing) -> None:
        """Queue a notification; never blocks (a full queue drops it)."""
        try:
            self._queue.put_nowait((crossing, datetime.now(UTC)))
        except asyncio.QueueFull:
            self._count(crossing, "dropped")

    async def _run(self) -> None:
        while True:
            crossing, at = await self._queue.get()
            try:
                if await self._first_instance(crossing):
                    await self._post(event_body(crossing, at))
                    self._count(crossing, "sent")
            except Exception as error:
                self._count(crossing, "failed")
                log.warning("quota webhook failed: %s", type(error).__name__)

    async def _first_instance(self, crossing: Crossing) -> bool:
        if self._redis is None:
            return True
        limit = crossing.limit
        key = (
            f"xrouter:rl:{REDIS_HASH_TAG}:webhook:{limit.scope}:{limit.subject}:{limit.name}:"
            f"{crossing.threshold:g}"
        )
        try:
            async with asyncio.timeout(DEDUPE_TIMEOUT_SECONDS):
                first = await self._redis.set(key, "1", nx=True, ex=int(limit.period))
        except Exception:
            return True  # better a duplicate notification than a missing one
        return bool(first)

    async def _post(self, body: dict[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        async with self._session.post(self._url, json=body, timeout=timeout) as response:
            response.raise_for_status()

    def _count(self, crossing: Crossing, result: str) -> None:
        self._metrics.webhooks.labels(f"{crossing.threshold:g}", result).inc()


def event_body(crossing: Crossing, at: datetime) -> dict[str, Any]:
    limit = crossing.limit
    return {
        "type": "xrouter.quota.threshold",
        "threshold_percent": round(crossing.threshold * 100),
        "scope": limit.scope,
        "subject": limit.subject,
        "limit": limit.name,
        "limit_value": limit.limit,
        "period_seconds": int(limit.period),
        "remaining": crossing.remaining,
        "at": at.isoformat().replace("+00:00", "Z"),
    }
