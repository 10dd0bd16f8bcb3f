"""The in-process backend: limits held in this process's memory (the embedded default, and the
per-instance fallback while Redis is unreachable)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from xrouter.limits import gcra
from xrouter.limits.gcra import Decision
from xrouter.limits.policy import Limit

# Forget limits that are back to full every this many checks, so memory stays bounded by the
# number of subjects active within one period.
SWEEP_EVERY = 4096


class MemoryBackend:
    """GCRA over a dict of theoretical arrival times. Safe without locks: every operation runs
    to completion on the event loop without awaiting.

    With ``share`` > 1 every limit is divided by it: the local fallback of ``share`` instances
    that normally split one Redis-backed limit between them.
    """

    def __init__(
        self,
        *,
        name: str = "memory",
        share: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._share = share
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._checks = 0

    async def acquire(self, limits: Sequence[Limit], costs: Sequence[int]) -> Decision:
        return self.acquire_now(limits, costs)

    def acquire_now(self, limits: Sequence[Limit], costs: Sequence[int]) -> Decision:
        """``acquire`` without the coroutine, for callers that are not async."""
        now = self._clock()
        limits = self._scaled(limits)
        keys = [limit.storage_key for limit in limits]
        allowed, levels, states = gcra.check(
            limits, costs, [self._tats.get(key) for key in keys], now
        )
        if allowed:
            for key, level in zip(keys, levels, strict=True):
                self._tats[key] = now + level
        self._checks += 1
        if self._checks % SWEEP_EVERY == 0:
            self._sweep(now)
        return Decision(allowed, tuple(states), self.name)

    async def adjust(self, limits: Sequence[Limit], changes: Sequence[int]) -> None:
        self.adjust_now(limits, changes)

    def adjust_now(self, limits: Sequence[Limit], changes: Sequence[int]) -> None:
        """``adjust`` without the coroutine."""
        now = self._clock()
        for limit, change in zip(self._scaled(limits), changes, strict=True):
            if change == 0:
                continue
            key = limit.storage_key
            level = gcra.adjusted_level(limit, self._tats.get(key), now, change)
            if level > 0:
                self._tats[key] = now + level
            else:
                self._tats.pop(key, None)

    async def close(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        return len(self._tats)

    def _scaled(self, limits: Sequence[Limit]) -> Sequence[Limit]:
        if self._share == 1:
            return limits
        return [replace(limit, limit=max(1, limit.limit // self._share)) for limit in limits]

    def _sweep(self, now: float) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
