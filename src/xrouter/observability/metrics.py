"""Prometheus metrics of the ``/v1`` requests and of the worker's queues and pools.

Label values are API names, public model ids, provider names and HTTP statuses: bounded by the
configuration and the providers' catalogues, and never secret (no key, user or request id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xrouter.observability.loop_metrics import Counter, Gauge, Histogram

log = logging.getLogger(__name__)
# The gateway's own work (auth, parsing, routing, the limiter) takes well under a millisecond
# to a few milliseconds; Redis or a cold cache can add tens.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
# From a fast cached answer to a long generation.
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


class RequestMetrics:
    """Every request metric, registered in one registry (the runtime's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "xrouter_requests",
            "Finished /v1 requests by API, model, provider and HTTP status (refusals before "
            "routing have empty model and provider).",
            ["api", "model", "provider", "status"],
            registry=registry,
        )
        self.overhead = Histogram(
            "xrouter_request_overhead_seconds",
            "Gateway time before the upstream call: authentication, body, routing, limits.",
            ["api"],
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "xrouter_request_upstream_first_byte_seconds",
            "From the upstream call to the first token (streams) or the whole answer.",
            ["api", "provider", "stream"],
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "xrouter_request_duration_seconds",
            "Whole request, from the handler to the last byte of the answer or stream.",
            ["api", "provider", "stream"],
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "xrouter_tokens",
            "Tokens by direction (in: prompt, out: completion), API, model and provider.",
            ["direction", "api", "model", "provider"],
            registry=registry,
        )
        self.cost = Counter(
            "xrouter_cost_rub",
            "Cost of the served requests in roubles, from the price table, by model.",
            ["model", "provider"],
            registry=registry,
        )
        self.active_streams = Gauge(
            "xrouter_active_streams",
            "Streamed answers being sent right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )


class RuntimeCollector(Collector):
    """Reads queue and pool figures at scrape time: nothing is counted on the request path.

    Each reader returns ``{metric name: value}``; a reader that fails is skipped, so a scrape
    never fails because one part (say, a closed pool) cannot answer.
    """

    def __init__(self, readers: list[Callable[[], dict[str, float]]]) -> None:
        self._readers = readers

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        for reader in self._readers:
            try:
                values = reader()
            except Exception:
                log.debug("a runtime metric could not be read", exc_info=True)
                continue
            for name, value in values.items():
                yield GaugeMetricFamily(name, HELP[name], value=value)


HELP = {
    "xrouter_usage_queue_depth": "Usage records waiting to be written to the database.",
    "xrouter_usage_flush_lag_seconds": "Age of the oldest usage record not yet written.",
    "xrouter_usage_written": "Usage records written by this worker since it started.",
    "xrouter_usage_dropped": "Usage records dropped (buffer full or refused by the database).",
    "xrouter_db_pool_size": "Database connections the pool keeps.",
    "xrouter_db_pool_checked_out": "Database connections in use right now.",
    "xrouter_db_pool_overflow": "Database connections open beyond the pool size.",
    "xrouter_redis_pool_in_use": "Redis connections in use right now.",
    "xrouter_redis_pool_idle": "Idle Redis connections kept for reuse.",
}


def usage_reader(recorder: Any) -> Callable[[], dict[str, float]]:
    """The usage writer's queue depth, flush lag and counters."""

    def read() -> dict[str, float]:
        return {
            "xrouter_usage_queue_depth": recorder.pending,
            "xrouter_usage_flush_lag_seconds": recorder.lag_seconds(time.time()),
            "xrouter_usage_written": recorder.written,
            "xrouter_usage_dropped": recorder.dropped,
        }

    return read


def db_pool_reader(pool: Any) -> Callable[[], dict[str, float]]:
    """A SQLAlchemy queue pool's figures; nothing for pools without them (SQLite's)."""

    def read() -> dict[str, float]:
        if not hasattr(pool, "checkedout"):
            return {}
        return {
            "xrouter_db_pool_size": pool.size(),
            "xrouter_db_pool_checked_out": pool.checkedout(),
            "xrouter_db_pool_overflow": max(pool.overflow(), 0),
        }

    return read


def redis_pool_reader(client: Any) -> Callable[[], dict[str, float]]:
    """A Redis client's connection counts, summed over the nodes of a cluster. redis-py keeps
    them in attributes without a public reader: a single server's pool holds its connections
    in use and idle; a cluster node holds all its connections and, among them, the idle ones."""

    def read() -> dict[str, float]:
        if hasattr(client, "connection_pool"):
            pool = client.connection_pool
            return {
                "xrouter_redis_pool_in_use": len(pool._in_use_connections),
                "xrouter_redis_pool_idle": len(pool._available_connections),
            }
        nodes = client.get_nodes()
        idle = sum(len(node._free) for node in nodes)
        return {
            "xrouter_redis_pool_in_use": sum(len(node._connections) for node in nodes) - idle,
            "xrouter_redis_pool_idle": idle,
        }

    return read
