"""Builds the limiter a worker uses from its settings."""

from __future__ import annotations

import logging

import aiohttp
from prometheus_client import CollectorRegistry

from xrouter.limits.backend import LimiterBackend
from xrouter.limits.fallback import FailoverBackend
from xrouter.limits.limiter import RateLimiter
from xrouter.limits.memory import MemoryBackend
from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.limits.policy import LimitPolicy
from xrouter.limits.redis_backend import RedisBackend, limiter_client
from xrouter.limits.webhook import QuotaWebhook
from xrouter.settings import Settings

log = logging.getLogger(__name__)


def build_limiter(
    settings: Settings,
    registry: CollectorRegistry,
    session: aiohttp.ClientSession,
) -> RateLimiter:
    """The limiter: Redis-backed with a failure policy when Redis is configured (and the backend
    is ``auto`` or ``redis``), in-process otherwise."""
    tracker = QuotaTracker(settings.rate_limit_metrics_top)
    metrics = LimitMetrics(registry, tracker)
    backend: LimiterBackend
    redis_client = None
    if settings.redis_url and settings.rate_limit_backend != "memory":
        redis_client = limiter_client(settings.redis_url)
        backend = FailoverBackend(
            RedisBackend(
                redis_client,
                settings.rate_limit_redis_timeout_ms / 1000,
                observe_latency=metrics.redis_latency.observe,
            ),
            MemoryBackend(name="fallback", share=settings.rate_limit_instances),
            settings.rate_limit_failure_policy,
            settings.rate_limit_redis_retry_seconds,
            metrics,
        )
    else:
        backend = MemoryBackend()
        if settings.workers > 1:
            log.warning(
                "rate limits are kept in memory: each of the %d worker processes enforces them "
                "on its own; set XROUTER_REDIS_URL to share them",
                settings.workers,
            )
    webhook = None
    if settings.rate_limit_webhook_url:
        webhook = QuotaWebhook(settings.rate_limit_webhook_url, session, metrics, redis_client)
        webhook.start()
    return RateLimiter(LimitPolicy(settings), backend, metrics, tracker, webhook)
