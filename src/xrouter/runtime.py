"""Everything one worker holds while it serves: pools, caches, providers, background tasks.

Built empty when the app is created and filled by ``start()`` in the ASGI lifespan, so that
handlers hold one reference and never look anything up globally.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from xrouter.auth.components import AuthComponents, start_auth
from xrouter.auth.tokens import AccessTokens
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.keys.cache import KeyCache
from xrouter.keys.events import KeyEvents
from xrouter.keys.hashing import KeyHasher, load_pepper
from xrouter.keys.policy import KeyPolicy
from xrouter.keys.service import KeyService
from xrouter.lifecycle import Drain
from xrouter.limits.build import build_limiter
from xrouter.limits.limiter import RateLimiter
from xrouter.observability import multiprocess
from xrouter.observability.access_log import RequestObserver
from xrouter.observability.metrics import (
    RuntimeCollector,
    db_pool_reader,
    redis_pool_reader,
    usage_reader,
)
from xrouter.providers.base import Provider
from xrouter.providers.registry import EmulatorAddresses, build_providers
from xrouter.providers.transport import Timeouts, UpstreamTransport, create_session
from xrouter.redis_url import RedisClient, connect_redis, ping_redis
from xrouter.routing.build import Routing, start_routing
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.resolver import ModelResolver
from xrouter.settings import Settings
from xrouter.storage.database import create_engine, ping, session_factory
from xrouter.usage.journal import usage_journal
from xrouter.usage.periods import Calendar
from xrouter.usage.pricing import load_prices
from xrouter.usage.recorder import UsageRecorder
from xrouter.usage.service import UsageService
from xrouter.usage.spend import MonthlySpend

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    started: bool = False
    engine: AsyncEngine = field(init=False)
    session: aiohttp.ClientSession = field(init=False)
    transport: UpstreamTransport = field(init=False)
    providers: dict[str, Provider] = field(init=False)
    catalog: ModelCatalog = field(init=False)
    resolver: ModelResolver = field(init=False)
    # Routes, planner, executor and circuit breakers (routing/).
    routing: Routing = field(init=False)
    keys: KeyCache = field(init=False)
    key_service: KeyService = field(init=False)
    # Monthly spend per key and the per-request key checks (model allow-list, budget).
    spend: MonthlySpend = field(init=False)
    key_policy: KeyPolicy = field(init=False)
    usage_reports: UsageService = field(init=False)
    usage: UsageRecorder = field(init=False)
    auth: AuthComponents = field(init=False)
    # The /v1 token check; None until started.
    access_tokens: AccessTokens | None = None
    redis: RedisClient | None = None
    limiter: RateLimiter = field(init=False)
    # Every Prometheus metric of this worker; served at GET /metrics.
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Request metrics and the per-request log line (observability/).
    observer: RequestObserver = field(init=False)
    emulators: list[RunningEmulator] = field(default_factory=list)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    def __post_init__(self) -> None:
        self.drain = Drain(self.settings.shutdown_drain_seconds)

    async def start(self) -> None:
        """Start every part; each registers its own close, so a failed start unwinds cleanly."""
        settings = self.settings
        stack = self._stack
        self.engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        stack.push_async_callback(self.engine.dispose)
        sessions = session_factory(self.engine)
        pepper = load_pepper(settings)
        hasher = KeyHasher(pepper)
        self.keys = KeyCache(sessions, hasher, settings.key_cache_refresh_seconds)
        await self.keys.start()
        stack.push_async_callback(self.keys.close)
        if settings.redis_url:
            client = connect_redis(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            self.redis = client
            stack.push_async_callback(client.aclose)
        key_events = KeyEvents(self.redis, self.keys)
        await key_events.start()
        stack.push_async_callback(key_events.close)
        self.key_service = KeyService(sessions, hasher, cache=self.keys, events=key_events)
        self.spend = MonthlySpend(
            sessions,
            Calendar(settings.budget_utc_offset_hours),
            redis_client=self.redis,
            watched_keys=self.keys.budgeted_ids,
        )
        await self.spend.start()
        stack.push_async_callback(self.spend.close)
        self.key_policy = KeyPolicy(self.spend)
        prices = load_prices(settings)
        self.usage = UsageRecorder(
            sessions,
            settings.usage_flush_seconds,
            settings.usage_batch_size,
            prices=prices,
            spend=self.spend,
            journal=usage_journal(settings.usage_journal_dir, settings.database_url),
        )
        self.observer = RequestObserver(self.metrics, prices)
        readers = [usage_reader(self.usage), db_pool_reader(self.engine.pool)]
        if self.redis is not None:
            readers.append(redis_pool_reader(self.redis))
        if multiprocess.enabled():
            stack.callback(multiprocess.worker_exited)
            sampler = asyncio.create_task(multiprocess.sample_forever(self.metrics, readers))
            stack.callback(sampler.cancel)
        else:
            self.metrics.register(RuntimeCollector(readers))
        await self.usage.start()
        stack.push_async_callback(self.usage.close)
        self.usage_reports = UsageService(sessions, self.spend.calendar, self.usage)
        self.auth = await start_auth(
            settings, sessions, pepper, self.redis, self.key_service, stack
        )
        self.access_tokens = self.auth.tokens

        timeouts = Timeouts(
            connect=settings.upstream_connect_timeout_seconds,
            read=settings.upstream_read_timeout_seconds,
            total=settings.upstream_total_timeout_seconds,
        )
        self.session = create_session(timeouts, settings.upstream_max_connections)
        stack.push_async_callback(self.session.close)
        self.transport = UpstreamTransport(self.session)
        self.limiter = build_limiter(settings, self.metrics, self.session)
        stack.push_async_callback(self.limiter.close)
        self.providers = build_providers(settings, self.session, await self._start_emulators())
        self.catalog = ModelCatalog(self.providers, settings.models_cache_seconds)
        await self.catalog.start()
        stack.push_async_callback(self.catalog.close)
        self.routing = await start_routing(
            settings,
            self.providers,
            self.catalog,
            self.transport,
            timeouts,
            self.metrics,
            self.redis,
            stack,
        )
        self.resolver = ModelResolver(self.providers, self.catalog, self.routing.routes.current)
        self.started = True

    async def _start_emulators(self) -> EmulatorAddresses:
        """Run the emulator of each provider that has no credentials (local development)."""
        settings = self.settings
        addresses = EmulatorAddresses()
        if not settings.emulate_missing_providers:
            return addresses
        for kind, configured in (
            ("gigachat", settings.gigachat_configured),
            ("yandex", settings.yandex_configured),
        ):
            if configured:
                continue
            emulator = await start_emulator(kind, EmulatorOptions())  # type: ignore[arg-type]
            self._stack.push_async_callback(emulator.close)
            self.emulators.append(emulator)
            setattr(addresses, kind, emulator.url)
            log.warning(
                "EMULATED PROVIDER: %s has no credentials; its built-in emulator answers at %s. "
                "Replies are synthetic. Set its credentials to use the real service.",
                kind,
                emulator.url,
            )
        return addresses

    async def close(self) -> None:
        """Stop in the reverse order of start: usage is flushed before the database closes."""
        self.started = False
        await self._stack.aclose()

    async def check_ready(self, timeout: float = 2.0) -> dict[str, str]:
        """Reachability of each dependency, as ``{name: "ok" | reason}``."""
        checks: dict[str, str] = {}
        try:
            await ping(self.engine, timeout)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unreachable ({type(error).__name__})"
        if self.redis is not None:
            try:
                await asyncio.wait_for(ping_redis(self.redis), timeout)
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = f"unreachable ({type(error).__name__})"
        return checks
