from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import (
    alembic_config,
    current_revision,
    current_revision_async,
    head_revision,
    upgrade,
    upgrade_async,
)
from xrouter.storage.models import ApiKey, Base, new_id


def _tables_and_indexes(connection: Connection) -> tuple[set[str], set[str]]:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    indexes = {index["name"] for table in tables for index in inspector.get_indexes(table)}
    return tables, {name for name in indexes if name}


async def test_upgrade_to_head_creates_tables_and_indexes(empty_database_url: str) -> None:
    assert await current_revision_async(empty_database_url) is None

    await upgrade_async(empty_database_url)

    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            tables, indexes = await connection.run_sync(_tables_and_indexes)
    finally:
        await engine.dispose()
    assert {"api_keys", "usage_records", "alembic_version"} <= tables
    assert {
        "ix_api_keys_secret_hash",
        "ix_api_keys_updated_at",
        "ix_usage_records_created_at",
        "ix_usage_records_key_id_created_at",
    } <= indexes
    assert await current_revision_async(empty_database_url) == head_revision()


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    before = await current_revision_async(database_url)
    await upgrade_async(database_url)
    assert await current_revision_async(database_url) == before == head_revision()


async def test_models_match_the_migrations(database_url: str) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_timestamps_round_trip_as_aware_utc(database_url: str) -> None:
    moscow = timezone(timedelta(hours=3))
    written = datetime(2025, 3, 1, 15, 30, 45, 123456, tzinfo=moscow)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            session.add(
                ApiKey(
                    id=new_id("key_"),
                    name="n",
                    prefix="p",
                    secret_hash="h" * 64,
                    owner=None,
                    created_at=written,
                    updated_at=written,
                    revoked_at=None,
                )
            )
        async with session_factory(engine)() as session:
            read = await session.scalar(select(ApiKey.created_at))
            later = await session.scalar(
                select(ApiKey.id).where(ApiKey.updated_at > written - timedelta(microseconds=1))
            )
    finally:
        await engine.dispose()
    assert read == written
    assert read is not None
    assert read.utcoffset() == timedelta(0)
    assert later is not None


async def test_naive_timestamps_are_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            naive = datetime(2025, 1, 1)
            with pytest.raises(Exception, match="naive datetime"):
                await session.scalar(select(ApiKey.id).where(ApiKey.updated_at > naive))
    finally:
        await engine.dispose()


def test_sync_api_with_a_relative_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///./data/xrouter.db"
    assert current_revision(url) is None
    upgrade(url)
    upgrade(url)
    assert current_revision(url) == head_revision()
    assert (tmp_path / "data" / "xrouter.db").is_file()


async def test_key_limit_columns_survive_a_downgrade_and_upgrade(
    empty_database_url: str,
) -> None:
    await upgrade_async(empty_database_url, "0001")
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            before = await connection.run_sync(_api_key_columns)
        await upgrade_async(empty_database_url, "0002")
        async with engine.connect() as connection:
            after = await connection.run_sync(_api_key_columns)
        await downgrade_async(empty_database_url, "0001")
        async with engine.connect() as connection:
            downgraded = await connection.run_sync(_api_key_columns)
    finally:
        await engine.dispose()
    assert not {"rpm", "tpm", "tpd"} & before
    assert {"rpm", "tpm", "tpd"} <= after
    assert downgraded == before


async def test_created_by_app_column_up_and_down_keeps_the_keys(
    empty_database_url: str,
) -> None:
    await upgrade_async(empty_database_url, "0005")
    engine = create_engine(empty_database_url)
    now = datetime.now(UTC)
    row = {"id": "key_before0006", "name": "n", "prefix": "p", "hash": "h" * 64, "now": now}
    insert = text(
        "INSERT INTO api_keys (id, name, prefix, secret_hash, created_at, updated_at, kind,"
        " disabled, log_content) VALUES (:id, :name, :prefix, :hash, :now, :now,"
        " 'inference', false, false)"
    )
    try:
        async with engine.begin() as connection:
            before = await connection.run_sync(_api_key_columns)
            await connection.execute(insert, row)
        await upgrade_async(empty_database_url, "0006")
        async with engine.begin() as connection:
            after = await connection.run_sync(_api_key_columns)
            marked = await connection.scalar(text("SELECT created_by_app FROM api_keys"))
            await connection.execute(
                text("UPDATE api_keys SET created_by_app = 'https://notes.example'")
            )
        await downgrade_async(empty_database_url, "0005")
        async with engine.connect() as connection:
            downgraded = await connection.run_sync(_api_key_columns)
            kept = (await connection.execute(text("SELECT id FROM api_keys"))).scalars().all()
    finally:
        await engine.dispose()
    assert "created_by_app" not in before
    assert after == before | {"created_by_app"}
    assert marked is None  # keys made before the column were not made by an app
    assert downgraded == before
    assert kept == ["key_before0006"]


async def downgrade_async(database_url: str, revision: str) -> None:
    def downgrade_on(connection: Connection) -> None:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(downgrade_on)
    finally:
        await engine.dispose()


def _api_key_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("api_keys")}
