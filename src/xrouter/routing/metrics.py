"""Prometheus metrics of routing, per target (a public model id such as ``yandex/yandexgpt``).

Label values are target ids, provider names, route names, failure kinds and skip reasons: all
bounded by the configuration and the providers' catalogues, and none of them secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from xrouter.observability.loop_metrics import Counter, Histogram
from xrouter.routing.breaker import BreakerState

# From a fast cached answer to a long generation.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0)


class RoutingMetrics:
    """Every routing metric, registered in one registry (the runtime's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "xrouter_routing_attempts",
            "Upstream attempts by target and outcome (ok, or the failure kind).",
            ["target", "outcome"],
            registry=registry,
        )
        self.failures = Counter(
            "xrouter_routing_failures",
            "Failed upstream attempts by target and kind (timeout, server, rate_limited...).",
            ["target", "kind"],
            registry=registry,
        )
        self.retries = Counter(
            "xrouter_routing_retries",
            "Attempts repeated on the same target after a retryable failure.",
            ["target"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "xrouter_routing_fallbacks",
            "Requests that moved on from a target to the next one, by the target left.",
            ["target"],
            registry=registry,
        )
        self.skipped = Counter(
            "xrouter_routing_skipped",
            "Targets left out of a plan, by reason (circuit_open, incapable, key_forbids...).",
            ["target", "reason"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "xrouter_routing_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
            ["target"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "xrouter_routing_breaker_transitions",
            "Circuit breaker transitions by target and new state.",
            ["target", "state"],
            registry=registry,
        )
        self.first_byte = Histogram(
            "xrouter_routing_first_byte_seconds",
            "Time from an attempt's start to its answer's first byte (successful attempts).",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "xrouter_routing_attempt_seconds",
            "Duration of upstream attempts until answered or failed, by target and outcome.",
            ["target", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.client_disconnects = Counter(
            "xrouter_routing_client_disconnects",
            "Requests whose client went away while an upstream attempt ran (it was cancelled).",
            registry=registry,
        )

    def succeeded(self, target: str, seconds: float) -> None:
        """An attempt at ``target`` answered after ``seconds``."""
        self.attempts.labels(target, "ok").inc()
        self.first_byte.labels(target).observe(seconds)
        self.attempt_seconds.labels(target, "ok").observe(seconds)

    def breaker_changed(
        self, target: str, state: BreakerState, open_until: float | None, local: bool
    ) -> None:
        """A ``BreakerBoard`` listener."""
        self.breaker_state.labels(target).set(int(state))
        self.breaker_transitions.labels(target, state.name.lower()).inc()
