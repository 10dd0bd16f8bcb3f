"""Every query that reads usage: series of a key's rollups, totals per key, one generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from xrouter.storage.models import UsageRecord, UsageRollup
from xrouter.usage.periods import Granularity
from xrouter.usage.rollups import SUMMED_COLUMNS


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over a stretch of time; averages are None when nothing was measured."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_rub: float = 0.0
    latency_ms_sum: float = 0.0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def average_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.requests if self.requests else None

    @property
    def average_ttft_ms(self) -> float | None:
        return self.ttft_ms_sum / self.ttft_count if self.ttft_count else None

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(*(getattr(self, name) + getattr(other, name) for name in SUMMED_COLUMNS))


class UsageRepository:
    """Reads usage through one session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def rollups(
        self, key_id: str, granularity: Granularity, start: datetime, end: datetime
    ) -> dict[datetime, UsageTotals]:
        """The key's buckets in ``[start, end)``, by bucket start (empty buckets absent)."""
        query = (
            select(UsageRollup)
            .where(
                UsageRollup.key_id == key_id,
                UsageRollup.granularity == granularity,
                UsageRollup.bucket_start >= start,
                UsageRollup.bucket_start < end,
            )
            .order_by(UsageRollup.bucket_start)
        )
        rows = (await self._session.scalars(query)).all()
        return {row.bucket_start: _totals(row) for row in rows}

    async def totals_since(
        self, key_ids: Sequence[str], since: datetime, granularity: Granularity = "day"
    ) -> dict[str, UsageTotals]:
        """Each key's sums from ``since`` (a bucket boundary of ``granularity``) on."""
        if not key_ids:
            return {}
        columns = [func.sum(getattr(UsageRollup, name)) for name in SUMMED_COLUMNS]
        query = (
            select(UsageRollup.key_id, *columns)
            .where(
                UsageRollup.key_id.in_(list(key_ids)),
                UsageRollup.granularity == granularity,
                UsageRollup.bucket_start >= since,
            )
            .group_by(UsageRollup.key_id)
        )
        result: dict[str, UsageTotals] = {}
        for key_id, *sums in (await self._session.execute(query)).all():
            values = [value or 0 for value in sums]
            result[key_id] = UsageTotals(*values)
        return result

    async def generation(self, record_id: str) -> UsageRecord | None:
        """One usage record by its id (the response id the client was given)."""
        return await self._session.get(UsageRecord, record_id)


def _totals(row: UsageRollup) -> UsageTotals:
    return UsageTotals(*(getattr(row, name) for name in SUMMED_COLUMNS))
