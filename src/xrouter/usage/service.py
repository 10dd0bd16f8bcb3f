"""Usage for people and scripts: a key's series over time, totals, one generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.errors import InvalidRequestError
from xrouter.storage.models import utc_now
from xrouter.usage.periods import GRANULARITIES, STEPS, Calendar, Granularity
from xrouter.usage.recorder import UsageRecorder
from xrouter.usage.repository import UsageRepository, UsageTotals

MAX_POINTS = 2000
# How far back a series reaches when the caller names no start.
DEFAULT_POINTS: dict[Granularity, int] = {"minute": 60, "hour": 48, "day": 31}


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """One bucket of a series."""

    start: datetime
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class UsageSeries:
    """A key's usage in ``[start, end)``, every bucket present (empty ones as zeros)."""

    granularity: Granularity
    start: datetime
    end: datetime
    points: list[UsagePoint]

    @property
    def totals(self) -> UsageTotals:
        total = UsageTotals()
        for point in self.points:
            total = total + point.totals
        return total


class UsageService:
    """Reads usage, each call in its own session."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        calendar: Calendar,
        recorder: UsageRecorder | None = None,
    ) -> None:
        self._sessions = session_factory
        self.calendar = calendar
        self._recorder = recorder

    async def series(
        self,
        key_id: str,
        granularity: str = "hour",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> UsageSeries:
        """The key's usage per ``granularity`` bucket; ``InvalidRequestError`` for a bad range."""
        if granularity not in GRANULARITIES:
            raise InvalidRequestError(
                f"granularity must be one of: {', '.join(GRANULARITIES)}.", param="granularity"
            )
        step = STEPS[granularity]
        for name, value in (("from", start), ("to", end)):
            if value is not None and value.tzinfo is None:
                raise InvalidRequestError(
                    f"'{name}' must carry a time zone (e.g. 2025-03-01T00:00:00Z).", param=name
                )
        last = self.calendar.bucket_start(end or utc_now(), granularity)
        end_bucket = last + step
        if start is None:
            first = end_bucket - step * DEFAULT_POINTS[granularity]
        else:
            first = self.calendar.bucket_start(start, granularity)
        if first >= end_bucket:
            raise InvalidRequestError("'from' must be before 'to'.", param="from")
        count = int((end_bucket - first) / step)
        if count > MAX_POINTS:
            raise InvalidRequestError(
                f"The range holds {count} {granularity}s; at most {MAX_POINTS} are returned at "
                "once. Narrow it or use a coarser granularity.",
                param="granularity",
            )
        async with self._sessions() as session:
            found = await UsageRepository(session).rollups(
                key_id,
                granularity,
                first,
                end_bucket,
            )
        points = [
            UsagePoint(moment, found.get(moment, UsageTotals()))
            for moment in (first + step * index for index in range(count))
        ]
        return UsageSeries(granularity, first, end_bucket, points)

    async def totals_since(self, key_ids: Sequence[str], since: datetime) -> dict[str, UsageTotals]:
        """Each key's usage from ``since`` (a local midnight) on."""
        async with self._sessions() as session:
            return await UsageRepository(session).totals_since(key_ids, since)

    def today(self) -> datetime:
        return self.calendar.bucket_start(utc_now(), "day")

    def month(self) -> datetime:
        return self.calendar.month_start(utc_now())

    async def generation(self, record_id: str) -> dict[str, Any] | None:
        """One usage record by id, from the database or, in its first second, the buffer."""
        if self._recorder is not None:
            pending = self._recorder.pending_record(record_id)
            if pending is not None:
                return pending
        async with self._sessions() as session:
            row = await UsageRepository(session).generation(record_id)
        if row is None:
            return None
        return {column.key: getattr(row, column.key) for column in row.__table__.columns}
