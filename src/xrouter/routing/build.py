"""Builds a worker's routing parts from its settings: routes, planner, executor, breakers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from xrouter.providers.base import Provider
from xrouter.providers.transport import Timeouts, UpstreamTransport
from xrouter.redis_url import RedisClient
from xrouter.routing.breaker import BreakerBoard, BreakerPolicy
from xrouter.routing.breaker_sync import BreakerSync
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.executor import RouteExecutor
from xrouter.routing.metrics import RoutingMetrics
from xrouter.routing.planner import RoutePlanner, RoutingDefaults
from xrouter.routing.reload import LiveRoutes
from xrouter.routing.retry import Backoff
from xrouter.routing.strategies import LatencyTracker
from xrouter.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Routing:
    routes: LiveRoutes
    planner: RoutePlanner
    executor: RouteExecutor
    breakers: BreakerBoard
    latency: LatencyTracker
    sync: BreakerSync | None = None


async def start_routing(
    settings: Settings,
    providers: Mapping[str, Provider],
    catalog: ModelCatalog,
    transport: UpstreamTransport,
    timeouts: Timeouts,
    registry: CollectorRegistry,
    redis_client: RedisClient | None,
    stack: AsyncExitStack,
) -> Routing:
    """Load the routes (a wrong routes file stops the start) and start the breaker sync."""
    routes = LiveRoutes(settings.routes, settings.routes_file, providers)
    result = routes.load()
    log.info("routing: %d routes", result.routes)
    if routes.install_sighup():
        stack.callback(routes.remove_sighup)
    metrics = RoutingMetrics(registry)
    breakers = BreakerBoard(
        BreakerPolicy(
            window_seconds=settings.routing_breaker_window_seconds,
            min_requests=settings.routing_breaker_min_requests,
            failure_ratio=settings.routing_breaker_failure_ratio,
            open_seconds=settings.routing_breaker_open_seconds,
            half_open_probes=settings.routing_breaker_half_open_probes,
        )
    )
    breakers.listen(metrics.breaker_changed)
    sync = None
    if redis_client is not None and settings.routing_breaker_shared:
        sync = BreakerSync(breakers, redis_client, settings.routing_breaker_sync_seconds)
        with contextlib.suppress(Exception):
            await sync.poll()  # an unreachable Redis must not stop the start
        await sync.start()
        stack.push_async_callback(sync.close)
    latency = LatencyTracker()
    defaults = RoutingDefaults(
        timeouts=Timeouts(
            connect=timeouts.connect,
            read=timeouts.read,
            total=timeouts.total,
            first_byte=settings.upstream_first_byte_timeout_seconds,
        ),
        retries=settings.routing_retries,
        deadline_seconds=settings.routing_deadline_seconds,
        key_providers={
            key: frozenset(names) for key, names in settings.routing_key_providers.items()
        },
    )
    planner = RoutePlanner(providers, catalog, routes.current, breakers, latency, defaults)
    backoff = Backoff(
        settings.routing_backoff_base_ms / 1000, settings.routing_backoff_max_ms / 1000
    )
    executor = RouteExecutor(transport, breakers, latency, metrics, backoff)
    return Routing(routes, planner, executor, breakers, latency, sync)
