"""GCRA (the generic cell rate algorithm): a token bucket kept as one number per limit.

A limit of ``limit`` units per ``period`` seconds lets one unit back every ``interval =
period / limit`` seconds. Its whole state is the *theoretical arrival time* (TAT): the moment
the bucket will be full again. Its *level* ``max(TAT - now, 0)`` is how much of the period is in
use; a request costing ``cost`` units fits when ``level + cost * interval <= period``. So a full
bucket allows a burst of ``limit`` units, after which units come back smoothly, one per
interval; there are no window edges to game, and no 2x burst across them.

These functions are the reference for the in-process backend and are mirrored line for line by
the Lua script of the Redis backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from xrouter.limits.policy import Limit

# Floating-point sums of intervals can land a hair above ``period``; a slack far below one unit
# keeps an exact fit fitting without ever admitting an extra unit.
MAX_SLACK_SECONDS = 0.001


# Named tuples rather than frozen dataclasses: every check makes one of each per limit, and a
# frozen dataclass pays a call per field to be built.
class BucketState(NamedTuple):
    """One limit after a check: what is left, when it is full again, when to retry."""

    remaining: int
    # Seconds until the limit is back to its full allowance.
    reset_after: float
    # Seconds until this request would fit; 0 when the limit did not refuse it.
    retry_after: float = 0.0


class Decision(NamedTuple):
    """The outcome of checking every limit of a request at once."""

    allowed: bool
    states: tuple[BucketState, ...]
    # Which backend decided ("memory", "redis", "fallback"): settling goes to the same one.
    source: str


def slack(limit: Limit) -> float:
    return min(limit.interval / 2, MAX_SLACK_SECONDS)


def level_of(tat: float | None, now: float) -> float:
    return 0.0 if tat is None else max(tat - now, 0.0)


def state_at(limit: Limit, level: float, retry_after: float = 0.0) -> BucketState:
    remaining = math.floor((limit.period + slack(limit) - level) / limit.interval)
    return BucketState(min(max(remaining, 0), limit.limit), level, retry_after)


def check(
    limits: Sequence[Limit], costs: Sequence[int], tats: Sequence[float | None], now: float
) -> tuple[bool, list[float], list[BucketState]]:
    """Check every limit; return (allowed, the new levels to store if allowed, the states).

    All or nothing: a request refused by one limit is charged to none of them.
    """
    levels = [level_of(tat, now) for tat in tats]
    wanted = [
        level + cost * limit.interval
        for limit, cost, level in zip(limits, costs, levels, strict=True)
    ]
    allowed = all(
        new <= limit.period + slack(limit) for limit, new in zip(limits, wanted, strict=True)
    )
    if allowed:
        return (
            True,
            wanted,
            [state_at(limit, new) for limit, new in zip(limits, wanted, strict=True)],
        )
    states = [
        state_at(
            limit, level, max(new - limit.period, 0.0) if new > limit.period + slack(limit) else 0.0
        )
        for limit, level, new in zip(limits, levels, wanted, strict=True)
    ]
    return False, levels, states


def adjusted_level(limit: Limit, tat: float | None, now: float, change: int) -> float:
    """The level after charging ``change`` more units (negative: a refund). A refund never
    takes a limit below empty; a charge may take it past full (the debt delays what follows)."""
    return max(level_of(tat, now) + change * limit.interval, 0.0)
