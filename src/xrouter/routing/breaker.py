"""Per-target circuit breakers: an unhealthy target is skipped instantly instead of timing out.

Closed: attempts are counted in a sliding window of buckets. When at least ``min_requests``
attempts in the window failed at ``failure_ratio`` or more, the breaker opens for
``open_seconds``: planning skips the target. Then it is half-open: up to ``half_open_probes``
requests try it; a success closes it, a failure opens it again.

State lives in memory; ``BreakerBoard`` reports every transition to listeners (metrics, and the
Redis sync that tells other instances) and applies transitions learnt from them. Nothing here
does I/O, so the request path pays a few dictionary operations.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BUCKETS_PER_WINDOW = 10


class BreakerState(enum.IntEnum):
    """Exported as the gauge value: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window_seconds: float = 60.0
    min_requests: int = 5
    failure_ratio: float = 0.5
    open_seconds: float = 30.0
    half_open_probes: int = 1


class CircuitBreaker:
    """One target's breaker. ``now`` is ``time.monotonic()`` (passed in for tests)."""

    __slots__ = ("_buckets", "_policy", "open_until", "probes", "state")

    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        # [bucket start, successes, failures], oldest first.
        self._buckets: deque[list[float]] = deque()
        self.state = BreakerState.CLOSED
        self.open_until = 0.0
        self.probes = 0

    def available(self, now: float) -> bool:
        """Whether planning should consider the target (closed, or due for a probe)."""
        if self.state is BreakerState.OPEN:
            return now >= self.open_until
        if self.state is BreakerState.HALF_OPEN:
            return self.probes < self._policy.half_open_probes
        return True

    def acquire(self, now: float) -> bool:
        """Permission for one attempt; in half-open state it takes a probe slot."""
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return False
            self.state, self.probes = BreakerState.HALF_OPEN, 0
        if self.state is BreakerState.HALF_OPEN:
            if self.probes >= self._policy.half_open_probes:
                return False
            self.probes += 1
        return True

    def record(self, success: bool, now: float) -> BreakerState | None:
        """Count an attempt's outcome; returns the new state if it changed."""
        if self.state is not BreakerState.CLOSED:
            self.probes = max(0, self.probes - 1)
            # A probe (or an attempt forced while every target was open) decides alone.
            return self.close() if success else self.trip(now)
        bucket = self._bucket(now)
        bucket[1 if success else 2] += 1
        if success:
            return None
        total = failures = 0.0
        for _, ok, failed in self._buckets:
            total += ok + failed
            failures += failed
        policy = self._policy
        if total >= policy.min_requests and failures / total >= policy.failure_ratio:
            return self.trip(now)
        return None

    def trip(self, now: float, until: float | None = None) -> BreakerState | None:
        previous = self.state
        self.state = BreakerState.OPEN
        self.open_until = until if until is not None else now + self._policy.open_seconds
        self.probes = 0
        self._buckets.clear()
        return BreakerState.OPEN if previous is not BreakerState.OPEN else None

    def close(self) -> BreakerState | None:
        previous = self.state
        self.state = BreakerState.CLOSED
        self.probes = 0
        self._buckets.clear()
        return BreakerState.CLOSED if previous is not BreakerState.CLOSED else None

    def _bucket(self, now: float) -> list[float]:
        width = self._policy.window_seconds / BUCKETS_PER_WINDOW
        buckets = self._buckets
        while buckets and buckets[0][0] <= now - self._policy.window_seconds:
            buckets.popleft()
        if not buckets or now - buckets[-1][0] >= width:
            buckets.append([now, 0, 0])
        return buckets[-1]


# (target, new state, when an open breaker may be probed again as Unix time or None, and
# whether this instance made the transition rather than learnt it from another one)
TransitionListener = Callable[[str, BreakerState, float | None, bool], None]


class BreakerBoard:
    """Every target's breaker, created on first use."""

    def __init__(
        self, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[TransitionListener] = []

    def listen(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def _get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(self.policy)
        return breaker

    def available(self, key: str) -> bool:
        breaker = self._breakers.get(key)
        return breaker is None or breaker.available(self._clock())

    def acquire(self, key: str) -> bool:
        breaker = self._get(key)
        before = breaker.state
        allowed = breaker.acquire(self._clock())
        if breaker.state is not before:
            self._notify(key, breaker, local=True)
        return allowed

    def record(self, key: str, success: bool) -> None:
        breaker = self._get(key)
        if breaker.record(success, self._clock()) is not None:
            self._notify(key, breaker, local=True)

    def release(self, key: str) -> None:
        """An attempt ended without a verdict on the target's health (cancelled, rate limited,
        refused the request's parameters): give back its probe slot, count nothing."""
        breaker = self._breakers.get(key)
        if breaker is not None and breaker.probes:
            breaker.probes -= 1

    def reset(self) -> None:
        """Forget every breaker (all targets closed again), without telling other instances."""
        self._breakers.clear()

    def state(self, key: str) -> BreakerState:
        breaker = self._breakers.get(key)
        return BreakerState.CLOSED if breaker is None else breaker.state

    def states(self) -> dict[str, tuple[BreakerState, float | None]]:
        """Each known target's state and, when open, the Unix time it may be probed again."""
        return {key: (b.state, self._wall(b)) for key, b in self._breakers.items()}

    def apply_remote(self, key: str, state: BreakerState, open_until: float | None) -> None:
        """A transition another instance made: adopt it without telling anyone back."""
        breaker = self._get(key)
        changed: BreakerState | None
        if state is BreakerState.OPEN and open_until is not None:
            now = self._clock()
            until = now + (open_until - time.time())
            if until <= now or (breaker.state is BreakerState.OPEN and breaker.open_until >= until):
                return
            changed = breaker.trip(now, until) or BreakerState.OPEN
        elif state is BreakerState.CLOSED:
            changed = breaker.close()
        else:
            return
        if changed is not None:
            self._notify(key, breaker, local=False)

    def _wall(self, breaker: CircuitBreaker) -> float | None:
        if breaker.state is not BreakerState.OPEN:
            return None
        return time.time() + (breaker.open_until - self._clock())

    def _notify(self, key: str, breaker: CircuitBreaker, *, local: bool) -> None:
        for listener in self._listeners:
            listener(key, breaker.state, self._wall(breaker), local)
