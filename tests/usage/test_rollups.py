"""Rollups equal the sums of the records they cover, even across retried batches; costs come
from the price table; spending is counted as it is recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.usage.test_recorder import CommitThenFailSession, _event
from tests.usage.usage_rows import add_key
from xrouter.settings import ConfigurationError, ModelPrice, Settings
from xrouter.storage.models import ApiKey, UsageRecord, UsageRollup
from xrouter.usage.periods import Calendar
from xrouter.usage.pricing import PriceTable, load_prices, read_price_file
from xrouter.usage.recorder import UsageRecorder
from xrouter.usage.rollups import last_used, rollup_rows
from xrouter.usage.spend import MonthlySpend

KEY = "key_0123456789abcdef"


async def _rollups(sessions: async_sessionmaker[AsyncSession]) -> dict[str, UsageRollup]:
    async with sessions() as session:
        rows = (await session.scalars(select(UsageRollup).where(UsageRollup.key_id == KEY))).all()
    return {row.granularity: row for row in rows}


async def test_rollups_sum_each_bucket(sessions: async_sessionmaker[AsyncSession]) -> None:
    prices = PriceTable({"gigachat/*": ModelPrice(prompt=1000, completion=2000)})
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100, prices=prices)
    for n in range(4):
        recorder.record(_event(n, model="gigachat/GigaChat-2", status_code=500 if n == 3 else 200))
    assert await recorder.flush()
    rollups = await _rollups(sessions)
    assert set(rollups) == {"minute", "hour", "day"}
    for row in rollups.values():
        assert (row.requests, row.errors) == (4, 1)
        assert (row.prompt_tokens, row.completion_tokens) == (40, 20)
        assert row.cost_rub == pytest.approx(4 * (10 * 1000 + 5 * 2000) / 1e6)
        assert row.latency_ms_sum == pytest.approx(4 * 123.5)
        assert (row.ttft_count, row.ttft_ms_sum) == (2, pytest.approx(90.5))
    async with sessions() as session:
        costs = (await session.scalars(select(UsageRecord.cost_rub))).all()
    assert costs == [pytest.approx(0.02)] * 4
    await recorder.close()


async def test_a_retried_batch_is_not_counted_twice(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    CommitThenFailSession.failures_left = 1
    flaky = async_sessionmaker(engine, class_=CommitThenFailSession, expire_on_commit=False)
    recorder = UsageRecorder(flaky, flush_seconds=60, batch_size=100)  # type: ignore[arg-type]
    for n in range(5):
        recorder.record(_event(n))
    assert not await recorder.flush()  # committed, but the recorder saw an error
    assert await recorder.flush()
    assert (await _rollups(sessions))["day"].requests == 5
    await recorder.close()


async def test_last_used_moves_forward_without_touching_updated_at(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    await add_key(sessions, KEY, stamp)
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=100)
    recorder.record(_event(1))
    assert await recorder.flush()
    async with sessions() as session:
        row = await session.get(ApiKey, KEY)
        assert row is not None
        assert row.last_used_at is not None
        assert row.last_used_at > stamp
        assert row.updated_at == stamp
    await recorder.close()


async def test_spend_is_counted_when_recorded_and_loaded_at_start(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    calendar = Calendar(3)
    spend = MonthlySpend(sessions, calendar)
    await spend.start()
    prices = PriceTable({"*": ModelPrice(prompt=1_000_000)})  # one rouble a prompt token
    recorder = UsageRecorder(sessions, 60, 100, prices=prices, spend=spend)
    recorder.record(_event(1, model="m/x"))
    assert spend.spent(KEY) == pytest.approx(10)
    assert await recorder.flush()
    fresh = MonthlySpend(sessions, calendar)
    await fresh.start()
    assert fresh.spent(KEY) == pytest.approx(10)
    await fresh.close()
    await spend.close()
    await recorder.close()


def test_rollup_rows_sum_minutes_into_hours_and_local_days() -> None:
    calendar = Calendar(3)  # local midnight is 21:00 UTC

    def record(moment: datetime, key_id: str | None = KEY, **values: object) -> dict[str, object]:
        fields: dict[str, object] = {
            "key_id": key_id,
            "created_at": moment,
            "status_code": 200,
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "cost_rub": None,
            "latency_ms": 10.0,
            "ttft_ms": None,
        }
        return fields | values

    records = [
        record(datetime(2026, 3, 1, 20, 59, 1, tzinfo=UTC), status_code=500, ttft_ms=4.0),
        record(datetime(2026, 3, 1, 20, 59, 59, tzinfo=UTC), cost_rub=0.5),
        record(datetime(2026, 3, 1, 21, 0, 0, tzinfo=UTC)),  # the next local day
        record(datetime(2026, 3, 1, 21, 0, 0, tzinfo=UTC), key_id="key_other"),
        record(datetime(2026, 3, 1, 21, 0, 0, tzinfo=UTC), key_id=None),
    ]

    rows = rollup_rows(records, calendar)

    before = (2, 1, 2, 4, 0.5, 20.0, 4.0, 1)  # the two records before local midnight
    after = (1, 0, 1, 2, 0.0, 10.0, 0.0, 0)  # one record at local midnight
    assert rows == [
        (KEY, "day", datetime(2026, 2, 28, 21, tzinfo=UTC), *before),
        (KEY, "day", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
        (KEY, "hour", datetime(2026, 3, 1, 20, tzinfo=UTC), *before),
        (KEY, "hour", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
        (KEY, "minute", datetime(2026, 3, 1, 20, 59, tzinfo=UTC), *before),
        (KEY, "minute", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
        ("key_other", "day", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
        ("key_other", "hour", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
        ("key_other", "minute", datetime(2026, 3, 1, 21, tzinfo=UTC), *after),
    ]
    assert last_used(records) == [
        ("key_0123456789abcdef", datetime(2026, 3, 1, 21, tzinfo=UTC)),
        ("key_other", datetime(2026, 3, 1, 21, tzinfo=UTC)),
    ]


def test_month_boundaries_follow_the_offset() -> None:
    calendar = Calendar(3)
    # 22:30 UTC on 31 January is already 1 February in Moscow.
    moment = datetime(2025, 1, 31, 22, 30, tzinfo=UTC)
    assert calendar.month_start(moment) == datetime(2025, 1, 31, 21, 0, tzinfo=UTC)
    assert calendar.next_month_start(moment) == datetime(2025, 2, 28, 21, 0, tzinfo=UTC)
    assert calendar.bucket_start(moment, "day") == datetime(2025, 1, 31, 21, 0, tzinfo=UTC)
    assert calendar.bucket_start(moment, "hour") == datetime(2025, 1, 31, 22, 0, tzinfo=UTC)
    december = datetime(2025, 12, 15, tzinfo=UTC)
    assert calendar.next_month_start(december) == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)


def test_spend_resets_when_the_month_turns() -> None:
    now = [datetime(2025, 1, 31, 20, 59, tzinfo=UTC).timestamp()]
    spend = MonthlySpend(None, Calendar(3), clock=lambda: now[0])  # type: ignore[arg-type]
    spend.add(KEY, 5.0)
    assert spend.spent(KEY) == 5.0
    now[0] += 120  # 21:01 UTC: February in Moscow
    assert spend.spent(KEY) == 0.0
    assert spend.resets_at() == datetime(2025, 2, 28, 21, 0, tzinfo=UTC)


def test_price_lookup_prefers_the_most_specific_entry() -> None:
    table = PriceTable(
        {
            "yandex/*": ModelPrice(prompt=1),
            "yandex/yandexgpt": ModelPrice(prompt=2),
            "yandex/yandexgpt:rc": ModelPrice(prompt=3),
            "yandex/yandexgpt-*": ModelPrice(prompt=4),
        }
    )
    assert table.price("yandex/yandexgpt:rc") == ModelPrice(prompt=3)
    assert table.price("yandex/yandexgpt:latest") == ModelPrice(prompt=2)
    assert table.price("yandex/yandexgpt-lite") == ModelPrice(prompt=4)
    assert table.price("yandex/llama") == ModelPrice(prompt=1)
    assert table.price("gigachat/GigaChat") is None
    assert table.cost("gigachat/GigaChat", 100, 100) == 0.0
    assert table.cost("yandex/llama", 500_000, 0) == pytest.approx(0.5)


def test_prices_from_settings_and_files(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("gigachat/*:\n  prompt: 10\n  completion: 20\n", encoding="utf-8")
    table = load_prices(
        Settings(model_prices_file=path, model_prices={"yandex/*": ModelPrice(prompt=7)})
    )
    assert table.price("gigachat/GigaChat-2-Max") == ModelPrice(prompt=10, completion=20)
    assert table.price("yandex/yandexgpt") == ModelPrice(prompt=7)
    assert load_prices(Settings()).price("gigachat/GigaChat-2-Max") is not None
    path.write_text("gigachat/*:\n  prompt: -1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="XROUTER_MODEL_PRICES_FILE"):
        read_price_file(path)
