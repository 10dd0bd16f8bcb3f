"""The limit step of the proxied path: admit or refuse a request, then settle it.

``RateLimiter.admit`` checks every limit of a request in one backend call and returns an
``Admission`` (its headers go on the response, whatever its status) or raises a 429. When the
request ends, ``Admission.settle`` corrects the token reservation with the real usage, or
refunds everything when the request failed before the provider produced anything, so a client
retrying a failed request is not charged twice. Settling runs in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import Counter

from xrouter.deadlines import SharedTimeout
from xrouter.errors import RateLimitError
from xrouter.keys.cache import ActiveKey
from xrouter.limits.backend import LimiterBackend
from xrouter.limits.fallback import FailoverBackend
from xrouter.limits.gcra import BucketState, Decision
from xrouter.limits.headers import rate_limit_headers, retry_headers
from xrouter.limits.memory import MemoryBackend
from xrouter.limits.metrics import LimitMetrics, QuotaTracker
from xrouter.limits.policy import Limit, LimitPolicy
from xrouter.limits.webhook import QuotaWebhook
from xrouter.providers.base import ModelTarget

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_SECONDS = 5.0
# Requests settled by one backend call at most (a few keys each).
SETTLE_BATCH_REQUESTS = 200


class RateLimitExceededError(RateLimitError):
    """429: a limit refused the request. ``type`` is ``requests`` or ``tokens``, as OpenAI's."""

    def __init__(self, message: str, kind: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.error_type = kind


class RateLimiter:
    """Applies the policy's limits through a backend, with metrics and quota notifications."""

    def __init__(
        self,
        policy: LimitPolicy,
        backend: LimiterBackend,
        metrics: LimitMetrics,
        tracker: QuotaTracker,
        webhook: QuotaWebhook | None = None,
    ) -> None:
        self.policy = policy
        self.backend = backend
        self._metrics = metrics
        self._tracker = tracker
        self._webhook = webhook
        self._pending: set[asyncio.Task[None]] = set()
        # Settlements waiting for the one task that sends them, in batches.
        self._settlements: list[tuple[LimiterBackend, Sequence[Limit], list[int]]] = []
        self._settler: asyncio.Task[None] | None = None
        self._settle_budget = SharedTimeout(SETTLE_TIMEOUT_SECONDS)
        # The checks counter's children by (backend, allowed), found without ``labels()``.
        self._check_counters: dict[tuple[str, bool], Counter] = {}

    async def admit(self, key: ActiveKey, target: ModelTarget, tokens: int) -> Admission:
        """Charge one request and ``tokens`` estimated tokens to every applicable limit, or
        raise ``RateLimitExceededError`` (429) naming the limit that refused."""
        limits = self.policy.limits_for(key, target)
        if not limits:
            return UNLIMITED
        costs = []
        for limit in limits:
            cost = 1 if limit.kind == "requests" else tokens
            if cost > limit.limit:
                raise self._too_large(limit, cost)
            costs.append(cost)
        decision = await self.backend.acquire(limits, costs)
        allowed, states, source = decision
        counter = self._check_counters.get((source, allowed))
        if counter is None:
            counter = self._check_counters[source, allowed] = self._checks(source, allowed)
        counter.inc()
        crossings = self._tracker.observe(limits, states, allowed)
        if crossings and self._webhook is not None:
            for crossing in crossings:
                self._webhook.offer(crossing)
        headers = rate_limit_headers(limits, states)
        if not allowed:
            raise self._refused(limits, costs, states, headers)
        return Admission(self, limits, costs, decision, headers)

    def settle_later(self, decision: Decision, limits: Sequence[Limit], changes: list[int]) -> None:
        backend = self.backend
        if isinstance(backend, FailoverBackend):
            backend = backend.backend_for(decision.source)
        if isinstance(backend, MemoryBackend):
            backend.adjust_now(limits, changes)  # no I/O: no task needed
            return
        # Requests that end while a batch is on its way travel in the next one: one task and
        # one round trip per batch instead of per request (the adjust script applies its
        # keys one after the other, so a key may appear several times).
        self._settlements.append((backend, limits, changes))
        if self._settler is None:
            self._settler = asyncio.create_task(self._settle_batches())
            self._pending.add(self._settler)
            self._settler.add_done_callback(self._pending.discard)

    async def _settle_batches(self) -> None:
        try:
            while self._settlements:
                batch = self._settlements[:SETTLE_BATCH_REQUESTS]
                del self._settlements[:SETTLE_BATCH_REQUESTS]
                merged: dict[int, tuple[LimiterBackend, list[Limit], list[int]]] = {}
                for backend, limits, changes in batch:
                    entry = merged.setdefault(id(backend), (backend, [], []))
                    entry[1].extend(limits)
                    entry[2].extend(changes)
                for backend, limits, changes in merged.values():
                    try:
                        with self._settle_budget.deadline():
                            await backend.adjust(limits, changes)
                    except Exception:
                        self._metrics.settlements_lost.inc()
                        log.warning("rate limiter: a settlement failed", exc_info=True)
        finally:
            self._settler = None

    def _checks(self, source: str, allowed: bool) -> Counter:
        return self._metrics.checks.labels(source, "allowed" if allowed else "rejected")

    async def close(self) -> None:
        """Wait (briefly) for pending settlements, then close the backend and the webhook."""
        if self._pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_TIMEOUT_SECONDS):
                    await asyncio.gather(*self._pending, return_exceptions=True)
        if self._webhook is not None:
            await self._webhook.close()
        await self.backend.close()

    def _refused(
        self,
        limits: Sequence[Limit],
        costs: Sequence[int],
        states: Sequence[BucketState],
        headers: dict[str, str],
    ) -> RateLimitExceededError:
        # The limit that keeps the request waiting longest is the one to name.
        limit, cost, state = max(
            zip(limits, costs, states, strict=True), key=lambda item: item[2].retry_after
        )
        self._metrics.rejections.labels(limit.scope, limit.name).inc()
        used = limit.limit - state.remaining
        requested = f", Requested {cost}" if limit.kind == "tokens" else ""
        message = (
            f"Rate limit reached for {limit.describe()}: Limit {limit.limit}, Used {used}"
            f"{requested}. Please try again in {state.retry_after:.3g}s."
        )
        return RateLimitExceededError(
            message, limit.kind, {**headers, **retry_headers(state.retry_after)}
        )

    def _too_large(self, limit: Limit, cost: int) -> RateLimitExceededError:
        self._metrics.rejections.labels(limit.scope, limit.name).inc()
        message = (
            f"Request too large for {limit.describe()}: Limit {limit.limit}, Requested {cost}. "
            "Reduce the input or max_tokens (the reservation counts both)."
        )
        return RateLimitExceededError(message, limit.kind, {})


class Admission:
    """An admitted request: its rate-limit headers, and its reservation until it settles."""

    __slots__ = ("_costs", "_decision", "_limiter", "_limits", "_settled", "headers")

    def __init__(
        self,
        limiter: RateLimiter | None,
        limits: Sequence[Limit],
        costs: Sequence[int],
        decision: Decision | None,
        headers: dict[str, str],
    ) -> None:
        self._limiter = limiter
        self._limits = limits
        self._costs = costs
        self._decision = decision
        self._settled = limiter is None
        self.headers = headers

    @property
    def reserved_tokens(self) -> int:
        return max(
            (
                cost
                for limit, cost in zip(self._limits, self._costs, strict=True)
                if limit.kind == "tokens"
            ),
            default=0,
        )

    def settle(self, used_tokens: int | None, *, refund: bool = False) -> None:
        """Finish the reservation once: ``refund`` returns the request and all its tokens (it
        failed before the provider produced anything); otherwise ``used_tokens`` replaces the
        token estimate (None: unknown, the estimate stands)."""
        if self._settled:
            return
        self._settled = True
        if refund:
            changes = [-cost for cost in self._costs]
        elif used_tokens is None:
            return  # the estimate stands
        else:
            changes = [
                used_tokens - cost if limit.kind == "tokens" else 0
                for limit, cost in zip(self._limits, self._costs, strict=True)
            ]
        if any(changes) and self._limiter is not None and self._decision is not None:
            self._limiter.settle_later(self._decision, self._limits, changes)


# Shared by every request no limit applies to: nothing to settle, no headers.
UNLIMITED = Admission(None, (), (), None, {})
