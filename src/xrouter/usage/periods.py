"""Time buckets of usage: minutes, hours, and days and months that begin at local midnight.

Days and months follow the configured UTC offset (Moscow time by default), so a key's daily
totals and monthly budget turn over when its owner expects; minutes and hours are the same
everywhere. Every value is an aware UTC datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

Granularity = Literal["minute", "hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("minute", "hour", "day")
STEPS: dict[Granularity, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}


class Calendar:
    """Bucket boundaries at one UTC offset."""

    def __init__(self, utc_offset_hours: int) -> None:
        self.zone = timezone(timedelta(hours=utc_offset_hours))

    def bucket_start(self, moment: datetime, granularity: Granularity) -> datetime:
        """The start of the bucket ``moment`` falls in."""
        if granularity == "minute":
            return moment.astimezone(UTC).replace(second=0, microsecond=0)
        if granularity == "hour":
            return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        local = moment.astimezone(self.zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)

    def month_start(self, moment: datetime) -> datetime:
        """Local midnight of the first day of ``moment``'s month."""
        local = moment.astimezone(self.zone)
        first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return first.astimezone(UTC)

    def next_month_start(self, moment: datetime) -> datetime:
        """When the month after ``moment``'s begins: when monthly budgets reset."""
        local = moment.astimezone(self.zone)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return datetime(year, month, 1, tzinfo=self.zone).astimezone(UTC)

    def local(self, moment: datetime) -> datetime:
        """``moment`` at this calendar's offset, for messages shown to people."""
        return moment.astimezone(self.zone)
