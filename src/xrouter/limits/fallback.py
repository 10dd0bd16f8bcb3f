"""What happens when Redis is unreachable or slow: the failure policy.

``open`` (the default) keeps serving with a per-instance in-memory limiter, each instance
enforcing its share of every limit; ``closed`` refuses requests with 503 until Redis answers.
Either way the transition is logged once, the ``xrouter_ratelimit_degraded`` gauge shows it, and
Redis is probed again every ``retry_seconds`` (by one request at a time, bounded by the same
short timeout), so the limiter recovers by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

from xrouter.errors import GatewayError
from xrouter.limits.backend import BackendUnavailableError, LimiterBackend
from xrouter.limits.gcra import Decision
from xrouter.limits.metrics import LimitMetrics
from xrouter.limits.policy import Limit

log = logging.getLogger(__name__)

FailurePolicy = Literal["open", "closed"]


class RateLimiterUnavailableError(GatewayError):
    """The shared limiter cannot be reached and the policy is to fail closed."""

    status = 503
    error_type = "api_error"
    default_code = "rate_limiter_unavailable"

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "Rate limits cannot be checked right now; the request was not processed. "
            "Retry shortly.",
            headers={"retry-after": str(max(1, round(retry_after)))},
        )


class FailoverBackend:
    """Redis first; on failure the policy decides until a probe finds Redis healthy again."""

    name = "failover"

    def __init__(
        self,
        primary: LimiterBackend,
        fallback: LimiterBackend,
        policy: FailurePolicy,
        retry_seconds: float,
        metrics: LimitMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._policy = policy
        self._retry_seconds = retry_seconds
        self._metrics = metrics
        self._clock = clock
        self._down_since: float | None = None
        self._probe_at = 0.0

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def acquire(self, limits: Sequence[Limit], costs: Sequence[int]) -> Decision:
        now = self._clock()
        if self._down_since is None or now >= self._probe_at:
            # While degraded, the request that finds the probe due probes; the rest do not wait.
            self._probe_at = now + self._retry_seconds
            try:
                decision = await self._primary.acquire(limits, costs)
            except BackendUnavailableError as error:
                self._went_down(error)
            else:
                self._came_back()
                return decision
        if self._policy == "closed":
            self._metrics.unavailable.inc()
            raise RateLimiterUnavailableError(self._retry_seconds)
        return await self._fallback.acquire(limits, costs)

    async def adjust(self, limits: Sequence[Limit], changes: Sequence[int]) -> None:
        """Settle against Redis; dropped while Redis is down (the reservation stands)."""
        if self._down_since is not None:
            self._metrics.settlements_lost.inc()
            return
        try:
            await self._primary.adjust(limits, changes)
        except BackendUnavailableError as error:
            self._metrics.settlements_lost.inc()
            self._went_down(error)

    def backend_for(self, source: str) -> LimiterBackend:
        """Where to settle a request decided by ``source``."""
        return self._fallback if source == self._fallback.name else self

    async def close(self) -> None:
        await self._primary.close()
        await self._fallback.close()

    def _went_down(self, error: BackendUnavailableError) -> None:
        self._metrics.redis_errors.labels(error.reason).inc()
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        self._metrics.degraded.set(1)
        action = (
            "serving with per-instance in-memory limits"
            if self._policy == "open"
            else "refusing requests with 503"
        )
        log.error("rate limiter: Redis unavailable (%s); %s until it answers again", error, action)

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        outage = self._clock() - self._down_since
        self._down_since = None
        self._metrics.degraded.set(0)
        log.warning("rate limiter: Redis answers again after %.1f s; shared limits resumed", outage)
