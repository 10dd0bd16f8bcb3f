"""The interface every limiter backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xrouter.limits.gcra import Decision
from xrouter.limits.policy import Limit


class BackendUnavailableError(Exception):
    """The backend could not answer in time; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class LimiterBackend(Protocol):
    """Stores limit state and checks requests against it."""

    name: str

    async def acquire(self, limits: Sequence[Limit], costs: Sequence[int]) -> Decision:
        """Check every limit at once; charge ``costs`` to all of them only if all allow it."""
        ...

    async def adjust(self, limits: Sequence[Limit], changes: Sequence[int]) -> None:
        """Charge ``changes`` more units to the limits (negative: refund); never refuses."""
        ...

    async def close(self) -> None:
        """Release connections and background work."""
        ...
