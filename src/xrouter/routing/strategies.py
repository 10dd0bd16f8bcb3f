"""How a route orders its targets: the first is tried first, the rest are the fallbacks.

``priority`` keeps the configured order; ``weighted`` draws the order at random in proportion
to the weights (so the first target of N requests follows the weights); ``latency`` puts the
target with the lowest moving average of time to first byte first; ``cost`` the cheapest for
the request's estimated tokens. Ordering works on memory only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

# Weight of the newest observation in the moving average of time to first byte.
LATENCY_SMOOTHING = 0.2


class Ranked(Protocol):
    """What a strategy needs to know about a candidate target."""

    @property
    def key(self) -> str: ...
    @property
    def weight(self) -> float: ...
    def cost(self, prompt_tokens: int, output_tokens: int) -> float | None: ...


T = TypeVar("T", bound=Ranked)


class LatencyTracker:
    """Exponential moving average of time to first byte, per target, in seconds."""

    def __init__(self, smoothing: float = LATENCY_SMOOTHING) -> None:
        self._smoothing = smoothing
        self._average: dict[str, float] = {}

    def observe(self, key: str, seconds: float) -> None:
        previous = self._average.get(key)
        self._average[key] = (
            seconds if previous is None else previous + self._smoothing * (seconds - previous)
        )

    def average(self, key: str) -> float | None:
        return self._average.get(key)

    def snapshot(self) -> dict[str, float]:
        return dict(self._average)


def priority(candidates: Sequence[T]) -> list[T]:
    return list(candidates)


def weighted(candidates: Sequence[T], rng: random.Random) -> list[T]:
    """A random order in which each target comes first with probability weight / total;
    the remaining order is drawn the same way among the rest. Zero weights go last."""
    pool = [c for c in candidates if c.weight > 0]
    order: list[T] = []
    while pool:
        total = sum(c.weight for c in pool)
        point = rng.random() * total
        for index, candidate in enumerate(pool):
            point -= candidate.weight
            if point < 0 or index == len(pool) - 1:
                order.append(pool.pop(index))
                break
    return order + [c for c in candidates if c.weight <= 0]


def least_latency(candidates: Sequence[T], latency: LatencyTracker) -> list[T]:
    """Fastest first. A target never measured goes first, so that it gets measured."""

    def rank(candidate: T) -> float:
        average = latency.average(candidate.key)
        return -1.0 if average is None else average

    return sorted(candidates, key=rank)


def lowest_cost(candidates: Sequence[T], prompt_tokens: int, output_tokens: int) -> list[T]:
    """Cheapest first for the estimated tokens; targets without a price go last, in order."""
    infinity = float("inf")

    def rank(candidate: T) -> tuple[float, float]:
        cost = candidate.cost(prompt_tokens, output_tokens)
        if cost is None:
            return infinity, infinity
        # A tiny prompt without max_tokens is estimated at zero tokens, which would make every
        # priced target tie: the price of one token each way still tells them apart.
        unit = candidate.cost(1, 1)
        return cost, infinity if unit is None else unit

    return sorted(candidates, key=rank)


def order(
    strategy: str,
    candidates: Sequence[T],
    *,
    rng: random.Random,
    latency: LatencyTracker,
    tokens: Callable[[], tuple[int, int]],
) -> list[T]:
    """Order ``candidates`` by the named strategy (``priority`` for an unknown name)."""
    if strategy == "weighted":
        return weighted(candidates, rng)
    if strategy == "latency":
        return least_latency(candidates, latency)
    if strategy == "cost":
        return lowest_cost(candidates, *tokens())
    return priority(candidates)
