from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from xrouter.storage.models import UsageRecord
from xrouter.usage import recorder as recorder_module
from xrouter.usage.recorder import UsageEvent, UsageRecorder
from xrouter.usage.statements import usage_statements


def _event(n: int = 0, **overrides: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "request_id": f"req-{n}",
        "key_id": "key_0123456789abcdef",
        "model": "GigaChat-2",
        "provider": "gigachat",
        "status_code": 200,
        "stream": n % 2 == 0,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached_tokens": 2,
        "latency_ms": 123.5,
        "ttft_ms": 45.25 if n % 2 == 0 else None,
        "error_code": None,
    }
    fields.update(overrides)
    return UsageEvent(**fields)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[UsageRecord]:
    async with sessions() as session:
        result = await session.scalars(select(UsageRecord).order_by(UsageRecord.request_id))
        return list(result.all())


async def _count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(UsageRecord)) or 0


async def _eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


class TransactionCounter:
    """Counts the commits and the usage-record INSERTs sent to the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.commits = 0
        self.inserts = 0
        self.texts: set[str] = set()
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)
        event.listen(engine.sync_engine, "commit", self._committed)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USAGE_RECORDS"):
            self.inserts += 1
            self.texts.add(statement)

    def _committed(self, _conn: Any) -> None:
        self.commits += 1


@pytest.fixture
async def recorder(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[UsageRecorder]:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=10)
    await recorder.start()
    yield recorder
    await recorder.close()


async def test_events_are_written_with_every_field(
    recorder: UsageRecorder, sessions: async_sessionmaker[AsyncSession]
) -> None:
    recorder.record(_event(0))
    recorder.record(_event(1, status_code=502, error_code="upstream_error", key_id=None))
    assert recorder.pending == 2

    assert await recorder.flush()

    assert recorder.pending == 0
    first, second = await _rows(sessions)
    assert first.id.startswith("usage_")
    assert first.created_at.utcoffset() is not None
    assert (first.stream, first.ttft_ms, first.cached_tokens) == (True, 45.25, 2)
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (10, 5, 15)
    assert first.latency_ms == 123.5
    assert (second.status_code, second.error_code, second.key_id) == (502, "upstream_error", None)
    assert second.stream is False
    assert second.ttft_ms is None


async def test_a_full_batch_is_written_at_once_in_inserts_of_one_shape(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = usage_statements(engine.dialect.name)
    monkeypatch.setattr(statements, "page_rows", 10)
    counter = TransactionCounter(engine)
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=10)
    for n in range(25):  # flush_seconds is 60: only the batch size can wake the writer
        recorder.record(_event(n))
    await recorder.start()
    try:
        await _eventually(lambda: not recorder.pending)
    finally:
        await recorder.close()

    # Once awake, the writer takes everything waiting in one transaction (more than the batch
    # size: a writer behind catches up), in INSERTs of a page each (10, 10, 5) whose text is the
    # same whatever the row count: the database's statement cache holds one for them all.
    assert await _count(sessions) == 25
    assert counter.commits == 1
    assert counter.inserts == 3
    assert len(counter.texts) == 1


async def test_a_batch_takes_at_most_its_limit(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "MAX_BATCH_ROWS", 20)
    counter = TransactionCounter(engine)
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=10)
    for n in range(45):
        recorder.record(_event(n))

    assert await recorder.flush()
    await recorder.close()

    assert await _count(sessions) == 45
    assert counter.commits == 3  # 20, 20, 5


async def test_fewer_than_a_batch_wait_for_the_timer(recorder: UsageRecorder) -> None:
    for n in range(9):
        recorder.record(_event(n))
    await asyncio.sleep(0.2)
    assert recorder.pending == 9


async def test_timer_flushes_a_partial_batch(sessions: async_sessionmaker[AsyncSession]) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=0.05, batch_size=1000)
    await recorder.start()
    try:
        recorder.record(_event())
        await _eventually(lambda: not recorder.pending)
        assert await _count(sessions) == 1
    finally:
        await recorder.close()


async def test_close_flushes_everything_left(sessions: async_sessionmaker[AsyncSession]) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=1000)
    await recorder.start()
    for n in range(250):
        recorder.record(_event(n))

    await recorder.close()

    assert recorder.pending == 0
    assert await _count(sessions) == 250


async def test_failed_write_is_retried_without_loss(
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=0.02, batch_size=5)
    await recorder.start()
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE usage_records RENAME TO usage_records_away"))
    with caplog.at_level(logging.WARNING, logger="xrouter.usage.recorder"):
        for n in range(12):
            recorder.record(_event(n))
        await _eventually(lambda: "will retry" in caplog.text)
    assert recorder.pending == 12

    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE usage_records_away RENAME TO usage_records"))
    await recorder.close()

    assert recorder.pending == 0
    rows = await _rows(sessions)
    assert sorted(row.request_id for row in rows) == sorted(f"req-{n}" for n in range(12))


class CommitThenFailSession(AsyncSession):
    """Commits, then reports failure: as if the acknowledgement got lost on the way back."""

    failures_left = 1

    async def commit(self) -> None:
        await super().commit()
        if CommitThenFailSession.failures_left:
            CommitThenFailSession.failures_left -= 1
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))


async def test_retry_after_an_ambiguous_failure_writes_no_duplicates(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    CommitThenFailSession.failures_left = 1
    flaky = async_sessionmaker(engine, class_=CommitThenFailSession, expire_on_commit=False)
    recorder = UsageRecorder(flaky, flush_seconds=60, batch_size=100)  # type: ignore[arg-type]
    for n in range(7):
        recorder.record(_event(n))

    assert not await recorder.flush()  # committed, but the recorder saw an error
    assert recorder.pending == 7
    assert await recorder.flush()

    assert recorder.pending == 0
    assert await _count(sessions) == 7
    await recorder.close()


async def test_a_row_the_database_refuses_does_not_block_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(0))
    recorder.record(_event(1, model=None))  # NOT NULL violation
    recorder.record(_event(2))

    assert await recorder.flush()

    assert [row.request_id for row in await _rows(sessions)] == ["req-0", "req-2"]
    assert recorder.dropped == 1
    await recorder.close()


async def test_record_never_raises_and_drops_beyond_the_bound(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100, max_buffered=3)
    for n in range(5):
        recorder.record(_event(n))
    recorder.record("not an event")  # type: ignore[arg-type]

    assert recorder.pending == 3
    assert recorder.dropped == 3
    await recorder.close()
    assert await _count(sessions) == 3


async def test_close_gives_up_at_the_deadline(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    await recorder.start()
    recorder.record(_event())
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE usage_records"))

    async with asyncio.timeout(5):
        await recorder.close(timeout=0.3)

    assert recorder.pending == 1
