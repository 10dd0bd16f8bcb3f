"""Summing usage records into per-key minute, hour and day rollups.

The recorder writes the rollups in the transaction that inserts a batch, with exactly the rows
that INSERT added (a retried batch adds none twice), so the rollups always equal the sums of
the records they cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from xrouter.usage.periods import STEPS, Calendar

# The rollup columns that add up, in the order ``UsageTotals`` takes them.
SUMMED_COLUMNS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_rub",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)


def rollup_rows(records: Iterable[Mapping[str, Any]], calendar: Calendar) -> list[tuple[Any, ...]]:
    """One row per key, granularity and bucket summing ``records``: ``(key_id, granularity,
    bucket_start, *SUMMED_COLUMNS)``, sorted by primary key so concurrent writers lock rows in
    the same order (no deadlocks)."""
    # A minute lies within one hour and one day (offsets are whole hours): records are summed
    # per key and minute, and only those few sums are spread over the hours and days.
    minutes: dict[tuple[str, datetime], list[Any]] = {}
    minute = minute_end = None
    for record in records:
        key_id = record["key_id"]
        if key_id is None:
            continue
        moment = record["created_at"]
        # Records come in time order: most fall in the minute of the one before.
        if minute is None or minute_end is None or not minute <= moment < minute_end:
            minute = calendar.bucket_start(moment, "minute")
            minute_end = minute + STEPS["minute"]
        sums = minutes.get((key_id, minute))
        if sums is None:
            sums = minutes[key_id, minute] = [0, 0, 0, 0, 0.0, 0.0, 0.0, 0]
        sums[0] += 1
        if record["status_code"] >= 400:
            sums[1] += 1
        sums[2] += record["prompt_tokens"]
        sums[3] += record["completion_tokens"]
        sums[4] += record["cost_rub"] or 0.0
        sums[5] += record["latency_ms"]
        ttft = record["ttft_ms"]
        if ttft is not None:
            sums[6] += ttft
            sums[7] += 1
    totals: dict[tuple[str, str, datetime], list[Any]] = {}
    hours_and_days: dict[datetime, tuple[datetime, datetime]] = {}
    for (key_id, minute), sums in minutes.items():
        wider = hours_and_days.get(minute)
        if wider is None:
            wider = hours_and_days[minute] = (
                calendar.bucket_start(minute, "hour"),
                calendar.bucket_start(minute, "day"),
            )
        totals[key_id, "minute", minute] = sums
        for granularity, start in zip(("hour", "day"), wider, strict=True):
            total = totals.get((key_id, granularity, start))
            if total is None:
                totals[key_id, granularity, start] = list(sums)
            else:
                for index, value in enumerate(sums):
                    total[index] += value
    return [(*key, *totals[key]) for key in sorted(totals)]


def last_used(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime]]:
    """The newest record time of each key, ``(key_id, moment)`` in key order, for
    ``api_keys.last_used_at``."""
    newest: dict[str, datetime] = {}
    for record in records:
        key_id = record["key_id"]
        if key_id is not None and (key_id not in newest or record["created_at"] > newest[key_id]):
            newest[key_id] = record["created_at"]
    return sorted(newest.items())
