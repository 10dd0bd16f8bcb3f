"""Summing usage records into per-key minute, hour and day rollups, and writing them.

The recorder calls ``write_rollups`` in the transaction that inserts a batch, with exactly the
rows that INSERT added (a retried batch adds none twice), so the rollups always equal the sums
of the records they cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, bindparam, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from xrouter.storage.models import ApiKey, UsageRollup
from xrouter.usage.periods import GRANULARITIES, Calendar

ROLLUP_TABLE: Table = UsageRollup.metadata.tables[UsageRollup.__tablename__]
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
_KEY_TABLE: Table = ApiKey.metadata.tables[ApiKey.__tablename__]


def rollup_rows(records: Iterable[Mapping[str, Any]], calendar: Calendar) -> list[dict[str, Any]]:
    """One row per key, granularity and bucket, summing ``records``; sorted by primary key so
    concurrent writers lock rows in the same order (no deadlocks)."""
    sums: dict[tuple[str, str, datetime], dict[str, Any]] = {}
    for record in records:
        key_id = record.get("key_id")
        if key_id is None:
            continue
        ttft = record.get("ttft_ms")
        for granularity in GRANULARITIES:
            start = calendar.bucket_start(record["created_at"], granularity)
            row = sums.get((key_id, granularity, start))
            if row is None:
                row = sums[key_id, granularity, start] = {
                    "key_id": key_id,
                    "granularity": granularity,
                    "bucket_start": start,
                    **dict.fromkeys(SUMMED_COLUMNS, 0),
                }
            row["requests"] += 1
            row["errors"] += 1 if record["status_code"] >= 400 else 0
            row["prompt_tokens"] += record["prompt_tokens"]
            row["completion_tokens"] += record["completion_tokens"]
            row["cost_rub"] += record.get("cost_rub") or 0.0
            row["latency_ms_sum"] += record["latency_ms"]
            if ttft is not None:
                row["ttft_ms_sum"] += ttft
                row["ttft_count"] += 1
    return [sums[key] for key in sorted(sums)]


def last_used(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The newest record time of each key, for ``api_keys.last_used_at``."""
    newest: dict[str, datetime] = {}
    for record in records:
        key_id = record.get("key_id")
        if key_id is not None and (key_id not in newest or record["created_at"] > newest[key_id]):
            newest[key_id] = record["created_at"]
    return [{"target": key_id, "used_at": moment} for key_id, moment in sorted(newest.items())]


async def write_rollups(
    session: AsyncSession, records: list[dict[str, Any]], calendar: Calendar
) -> None:
    """Add ``records`` to the rollups and move their keys' ``last_used_at`` forward."""
    rows = rollup_rows(records, calendar)
    if rows:
        await session.execute(_upsert(session), rows)
    stamps = last_used(records)
    if stamps:
        # Never touches updated_at: being used is not a change the key caches must reload.
        column = _KEY_TABLE.c.last_used_at
        statement = (
            update(_KEY_TABLE)
            .where(_KEY_TABLE.c.id == bindparam("target"))
            .where(or_(column.is_(None), column < bindparam("used_at")))
            .values(last_used_at=bindparam("used_at"))
        )
        await session.execute(statement.execution_options(synchronize_session=False), stamps)


def _upsert(session: AsyncSession) -> Insert:
    dialect = session.get_bind().dialect.name
    statement = _UPSERTS.get(dialect)
    if statement is not None:
        return statement
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert(ROLLUP_TABLE)
    elif dialect == "sqlite":
        insert = sqlite.insert(ROLLUP_TABLE)
    else:
        raise NotImplementedError(f"usage rollups are not supported on {dialect}")
    # ``excluded`` builds a new alias and column collection on every access: once is enough.
    excluded = insert.excluded
    updates = {name: ROLLUP_TABLE.c[name] + excluded[name] for name in SUMMED_COLUMNS}
    upsert: Insert = insert.on_conflict_do_update(
        index_elements=["key_id", "granularity", "bucket_start"], set_=updates
    )
    _UPSERTS[dialect] = upsert
    return upsert


# The rollup upsert of each dialect, built once (statements are immutable).
_UPSERTS: dict[str, Insert] = {}
