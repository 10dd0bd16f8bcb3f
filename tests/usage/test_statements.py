"""The plain-SQL usage writes store what SQLAlchemy would: the ORM reads the rows back, and
rows it wrote itself are summed into and compared with as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.usage.test_recorder import _event
from tests.usage.usage_rows import add_key
from xrouter.storage.models import ApiKey, UsageRecord, UsageRollup
from xrouter.usage.recorder import UsageRecorder
from xrouter.usage.rollups import SUMMED_COLUMNS
from xrouter.usage.statements import SqliteStatements, sqlite_time

KEY = "key_0123456789abcdef"


async def test_sqlite_times_are_the_text_sqlalchemy_stores(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL takes datetimes as they are")
    moments = [
        datetime(2026, 1, 31, 21, 0, 5, tzinfo=UTC),
        datetime(2026, 1, 31, 21, 0, 5, 7, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 30, 0, 999_999, tzinfo=timezone(timedelta(hours=3))),
    ]
    async with sessions() as session, session.begin():
        for number, moment in enumerate(moments):
            session.add(
                UsageRollup(
                    key_id=f"key_{number}",
                    granularity="minute",
                    bucket_start=moment,
                    **dict.fromkeys(SUMMED_COLUMNS, 0),
                )
            )
    async with engine.connect() as connection:
        query = text("SELECT bucket_start FROM usage_rollups ORDER BY key_id")
        stored = (await connection.execute(query)).scalars().all()
    assert stored == [sqlite_time(moment) for moment in moments]


async def test_rollups_the_orm_wrote_are_added_to(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    starts = {
        "minute": now.replace(second=0, microsecond=0),
        "hour": now.replace(minute=0, second=0, microsecond=0),
    }
    async with sessions() as session, session.begin():
        for granularity, start in starts.items():
            session.add(
                UsageRollup(
                    key_id=KEY,
                    granularity=granularity,
                    bucket_start=start,
                    requests=1,
                    errors=1,
                    prompt_tokens=100,
                    completion_tokens=50,
                    cost_rub=1.5,
                    latency_ms_sum=10.0,
                    ttft_ms_sum=0.0,
                    ttft_count=0,
                )
            )
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(0))
    recorder.record(_event(1))
    assert await recorder.flush()
    await recorder.close()

    async with sessions() as session:
        rows = (await session.scalars(select(UsageRollup))).all()
    by_granularity = {row.granularity: row for row in rows}
    assert len(rows) == len(by_granularity) == 3  # no second row beside the ORM's
    for granularity in starts:
        row = by_granularity[granularity]
        if row.bucket_start != starts[granularity]:  # the minute turned between the two
            continue
        assert (row.requests, row.errors) == (3, 1)
        assert (row.prompt_tokens, row.completion_tokens) == (120, 60)
        assert row.cost_rub == pytest.approx(1.5)
        assert row.latency_ms_sum == pytest.approx(10 + 2 * 123.5)
        assert row.ttft_count == 1
        assert row.ttft_ms_sum == pytest.approx(45.25)


async def test_last_used_never_moves_back(sessions: async_sessionmaker[AsyncSession]) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await add_key(sessions, KEY, later, last_used_at=later)
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(0))
    assert await recorder.flush()
    await recorder.close()
    async with sessions() as session:
        key = await session.get(ApiKey, KEY)
    assert key is not None
    assert key.last_used_at == later


async def test_records_read_back_through_the_orm(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(0, id="gen-1", user_id="user_1", cost_rub=0.25, error_code="e"))
    queued = recorder.pending_record("gen-1")
    assert queued is not None
    assert await recorder.flush()
    await recorder.close()

    async with sessions() as session:
        record = await session.get(UsageRecord, "gen-1")
    assert record is not None
    assert {name: getattr(record, name) for name in queued} == queued
    assert type(record.stream) is bool
    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            raw = await connection.scalar(text("SELECT created_at FROM usage_records"))
        assert raw == sqlite_time(queued["created_at"])


async def test_a_record_another_writer_adds_meanwhile_makes_the_batch_retry(
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL learns what its INSERT added from RETURNING")
    first = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    first.record(_event(0, id="gen-1"))
    assert await first.flush()
    second = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    second.record(_event(0, id="gen-1"))
    second.record(_event(1, id="gen-2"))
    # The lookup of the ids present misses gen-1, as if it had been added just after.
    monkeypatch.setattr(SqliteStatements, "_PRESENT", "SELECT NULL WHERE ? IS NULL")

    assert not await second.flush()
    assert second.pending == 2
    monkeypatch.undo()
    assert await second.flush()

    async with sessions() as session:
        day = await session.scalar(
            select(UsageRollup.requests).where(UsageRollup.granularity == "day")
        )
    assert day == 2
    await first.close()
    await second.close()


async def test_an_id_twice_in_a_batch_is_written_and_counted_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(0, id="gen-1"))
    recorder.record(_event(1, id="gen-1"))
    recorder.record(_event(2, id="gen-2"))
    assert await recorder.flush()
    await recorder.close()

    async with sessions() as session:
        records = (await session.scalars(select(UsageRecord.request_id))).all()
        day = await session.scalar(
            select(UsageRollup.requests).where(UsageRollup.granularity == "day")
        )
    assert sorted(records) == ["req-0", "req-2"]
    assert day == 2
