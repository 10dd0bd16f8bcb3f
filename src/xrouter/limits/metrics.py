"""Prometheus metrics of the limiter, and the tracker behind the remaining-quota gauges.

Label values are scopes, limit names, backends and reasons, plus, in the remaining-quota gauges
only, the subjects (key ids, owners, model ids, provider names) of at most ``top`` limits: the
ones closest to exhaustion at scrape time. No label ever carries a secret.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xrouter.limits import gcra
from xrouter.limits.gcra import BucketState
from xrouter.limits.policy import Limit
from xrouter.observability.loop_metrics import Counter, Histogram

# Redis answers a script in well under a millisecond on a healthy network.
REDIS_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0)
# Limits remembered for the gauges and the webhook thresholds; the least recently seen go first.
TRACKED_LIMITS = 10_000
WEBHOOK_THRESHOLDS = (0.8, 1.0)
# A limit that fired a threshold may fire again once its use has fallen below this fraction.
REARM_BELOW = 0.5


@dataclass(frozen=True, slots=True)
class Crossing:
    """A limit's use crossed a webhook threshold (0.8 or 1.0) upwards."""

    limit: Limit
    threshold: float
    remaining: int


class _Tracked:
    __slots__ = ("fired", "full_at", "limit")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.full_at = 0.0
        self.fired = 0.0


class QuotaTracker(Collector):
    """Remembers how full each recently used limit is; exports the ``top`` fullest ones."""

    def __init__(self, top: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._top = top
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}

    def observe(
        self, limits: Sequence[Limit], states: Sequence[BucketState], allowed: bool
    ) -> list[Crossing]:
        """Record a check's outcome; return the thresholds it crossed upwards."""
        now = self._clock()
        tracked = self._tracked
        crossings: list[Crossing] = []
        for limit, state in zip(limits, states, strict=True):
            key = limit.storage_key
            entry = tracked.pop(key, None)
            if entry is None:
                entry = _Tracked(limit)
            else:
                entry.limit = limit
            tracked[key] = entry  # re-inserted last: the dict is ordered by recency
            entry.full_at = now + state.reset_after
            refused = not allowed and state.retry_after > 0
            used = 1.0 if refused else 1 - state.remaining / limit.limit
            if used < REARM_BELOW:
                entry.fired = 0.0
            elif used >= WEBHOOK_THRESHOLDS[0]:  # the lowest: most checks cross none
                for threshold in WEBHOOK_THRESHOLDS:
                    if used >= threshold > entry.fired:
                        entry.fired = threshold
                        crossings.append(Crossing(limit, threshold, state.remaining))
        while len(tracked) > TRACKED_LIMITS:
            del tracked[next(iter(tracked))]
        return crossings

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        if self._top == 0:
            return iter(families)
        now = self._clock()
        remaining, ratio = families

        def remaining_now(entry: _Tracked) -> int:
            return gcra.state_at(entry.limit, max(entry.full_at - now, 0.0)).remaining

        fullest = heapq.nsmallest(
            self._top,
            self._tracked.values(),
            key=lambda entry: remaining_now(entry) / entry.limit.limit,
        )
        for entry in fullest:
            limit = entry.limit
            labels = [limit.scope, limit.subject, limit.name]
            left = remaining_now(entry)
            remaining.add_metric(labels, left)
            ratio.add_metric(labels, left / limit.limit)
        return iter(families)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["scope", "subject", "limit"]
        return (
            GaugeMetricFamily(
                "xrouter_ratelimit_remaining",
                "Units left now in the limits closest to exhaustion (top N only).",
                labels=labels,
            ),
            GaugeMetricFamily(
                "xrouter_ratelimit_remaining_ratio",
                "Fraction of the limit left now, for the limits closest to exhaustion.",
                labels=labels,
            ),
        )


class LimitMetrics:
    """Every limiter metric, registered in one registry (the runtime's)."""

    def __init__(self, registry: CollectorRegistry, tracker: QuotaTracker) -> None:
        self.checks = Counter(
            "xrouter_ratelimit_checks",
            "Rate-limit checks by deciding backend (memory, redis, fallback) and result.",
            ["backend", "result"],
            registry=registry,
        )
        self.rejections = Counter(
            "xrouter_ratelimit_rejections",
            "Requests refused with 429, by the scope and name of the limit that refused them.",
            ["scope", "limit"],
            registry=registry,
        )
        self.redis_latency = Histogram(
            "xrouter_ratelimit_redis_seconds",
            "Time of one limiter round trip to Redis.",
            buckets=REDIS_LATENCY_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "xrouter_ratelimit_redis_errors",
            "Limiter calls to Redis that failed, by reason (timeout, connection, error).",
            ["reason"],
            registry=registry,
        )
        self.degraded = Gauge(
            "xrouter_ratelimit_degraded",
            "1 while Redis is unavailable and the failure policy (fallback or 503) applies.",
            registry=registry,
        )
        self.unavailable = Counter(
            "xrouter_ratelimit_unavailable",
            "Requests refused with 503 because Redis was unavailable (fail-closed policy).",
            registry=registry,
        )
        self.settlements_lost = Counter(
            "xrouter_ratelimit_settlements_lost",
            "Token settlements (refunds or extra charges) that could not be applied.",
            registry=registry,
        )
        self.webhooks = Counter(
            "xrouter_ratelimit_webhooks",
            "Quota webhook notifications by threshold and result (sent, failed, dropped).",
            ["threshold", "result"],
            registry=registry,
        )
        registry.register(tracker)
