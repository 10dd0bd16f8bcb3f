"""The SQL that writes a batch of usage records, their rollups and keys' ``last_used_at``.

SQLAlchemy Core's executemany processes every bound value in Python, about 10 µs a row. Here
each statement is plain SQL with one text whatever the batch size (so the drivers' statement
caches stay small), and its parameters are plain tuples that the driver binds in C, or (for
PostgreSQL's records) one JSON document that msgspec encodes. Values are stored exactly as
SQLAlchemy stores them (on SQLite a timestamp is the naive UTC text its ``DATETIME`` writes),
so the control plane reads them back through the ORM unchanged. The texts are put together
from the models' table and column names, never from values (hence the ``noqa: S608``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol

import msgspec
from sqlalchemy import Connection, Table

from xrouter.storage.models import ApiKey, UsageRecord, UsageRollup

RECORD_TABLE: Table = UsageRecord.metadata.tables[UsageRecord.__tablename__]
RECORD_COLUMNS = tuple(column.name for column in RECORD_TABLE.columns)
ROLLUP_TABLE: Table = UsageRollup.metadata.tables[UsageRollup.__tablename__]
ROLLUP_COLUMNS = tuple(column.name for column in ROLLUP_TABLE.columns)
_ROLLUP_KEY = ("key_id", "granularity", "bucket_start")
_KEY_TABLE = ApiKey.__tablename__
_JSON = msgspec.json.Encoder()


class UsageStatements(Protocol):
    """Writes one batch inside the caller's transaction (run through ``run_sync``: each
    statement waits for the driver in SQLAlchemy's greenlet, no coroutine of its own)."""

    # Rows per INSERT. Preparing a page's parameters holds the event loop (about 2 µs a row on
    # PostgreSQL, 1 µs on SQLite), between pages it serves requests; every page size shares
    # one SQL text.
    page_rows: int

    def insert_records(
        self, connection: Connection, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Insert ``rows`` (dicts of every record column), skipping ids already present (or
        earlier in ``rows``); return exactly the rows this statement added."""
        ...

    def upsert_rollups(self, connection: Connection, rollups: Sequence[tuple[Any, ...]]) -> None:
        """Add ``rollups`` (tuples in ``ROLLUP_COLUMNS`` order) to the stored sums."""
        ...

    def update_last_used(
        self, connection: Connection, stamps: Sequence[tuple[str, datetime]]
    ) -> None:
        """Move each key's ``last_used_at`` forward to its ``(key_id, moment)``, never back."""
        ...


class ConcurrentInsertError(Exception):
    """Another writer added some of a batch's records while it was written: try again."""


def usage_statements(dialect: str) -> UsageStatements:
    """The statements for the database ``dialect`` names."""
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        raise NotImplementedError(f"usage records are not supported on {dialect}")
    return statements


def sqlite_time(moment: datetime) -> str:
    """``moment`` as SQLAlchemy stores a timestamp on SQLite: naive UTC text with microseconds
    (``2026-01-31 21:00:05.000000``), which sorts and compares in time order."""
    return moment.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _rollup_updates() -> str:
    # Every summed column adds the new amount to the stored one.
    table = ROLLUP_TABLE.name
    summed = [name for name in ROLLUP_COLUMNS if name not in _ROLLUP_KEY]
    return ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in summed)


def _columns(names: Sequence[str]) -> str:
    return ", ".join(names)


class SqliteStatements:
    """Row tuples through executemany, which the sqlite3 module binds in C."""

    # A statement runs in aiosqlite's thread, a few hand-offs there and back, each waiting for
    # a busy event loop's thread to let go of the GIL: fewer, bigger pages (a page holds the
    # loop ~1 ms; 256 rows a page could not write more than ~3,000 a second on a busy core).
    page_rows = 1_000

    # created_at goes last: every other value is taken as it is, in one itemgetter call.
    _COLUMNS = (*(name for name in RECORD_COLUMNS if name != "created_at"), "created_at")
    _VALUES = itemgetter(*_COLUMNS[:-1])
    _PRESENT = f"SELECT id FROM {RECORD_TABLE.name} WHERE id IN (SELECT value FROM json_each(?))"  # noqa: S608
    _INSERT = (
        f"INSERT INTO {RECORD_TABLE.name} ({_columns(_COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
    )
    _UPSERT = (
        f"INSERT INTO {ROLLUP_TABLE.name} ({_columns(ROLLUP_COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))})"
        f" ON CONFLICT ({_columns(_ROLLUP_KEY)}) DO UPDATE SET {_rollup_updates()}"
    )
    _LAST_USED = (
        f"UPDATE {_KEY_TABLE} SET last_used_at = ?1"  # noqa: S608
        " WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)"
    )

    def insert_records(
        self, connection: Connection, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        # executemany returns no rows, so the ids already present are looked up first. The
        # lookup may run before this transaction takes the write lock: if another writer adds
        # one of the rest meanwhile, the count below differs and the batch is retried.
        ids = _JSON.encode([row["id"] for row in rows]).decode()
        present = set(connection.exec_driver_sql(self._PRESENT, (ids,)).scalars().all())
        new = _first_of_each_id(rows, present)
        if not new:
            return new
        values = self._VALUES
        parameters = [(*values(row), sqlite_time(row["created_at"])) for row in new]
        result = connection.exec_driver_sql(self._INSERT, parameters)
        if result.rowcount != len(new):
            raise ConcurrentInsertError(f"{len(new)} new usage records, {result.rowcount} added")
        return new

    def upsert_rollups(self, connection: Connection, rollups: Sequence[tuple[Any, ...]]) -> None:
        if rollups:
            parameters = [
                (key_id, granularity, sqlite_time(start), *sums)
                for key_id, granularity, start, *sums in rollups
            ]
            connection.exec_driver_sql(self._UPSERT, parameters)

    def update_last_used(
        self, connection: Connection, stamps: Sequence[tuple[str, datetime]]
    ) -> None:
        if stamps:
            parameters = [(sqlite_time(moment), key_id) for key_id, moment in stamps]
            connection.exec_driver_sql(self._LAST_USED, parameters)


class PostgresStatements:
    """Records as one JSON array that the server turns into rows (one statement with
    RETURNING); the rollups and keys through asyncpg's executemany, in primary key order
    (concurrent writers lock rows in the same order: no deadlocks).

    JSON rather than an array parameter per column: msgspec encodes a row's dict in well under
    a microsecond, where asyncpg's array encoder runs an ``isinstance`` check against abstract
    base classes for every element (about 10 µs a row). JSON keeps every value exactly: floats
    round-trip, timestamps keep their microseconds and offset."""

    # asyncpg runs on the event loop: a statement costs one round trip, a page's encoding
    # ~0.5 ms at this size.
    page_rows = 256

    _INSERT = (
        f"INSERT INTO {RECORD_TABLE.name} ({_columns(RECORD_COLUMNS)})"  # noqa: S608
        f" SELECT {_columns(RECORD_COLUMNS)}"
        f" FROM json_populate_recordset(NULL::{RECORD_TABLE.name}, $1::json)"
        " ON CONFLICT (id) DO NOTHING RETURNING id"
    )
    _UPSERT = (
        f"INSERT INTO {ROLLUP_TABLE.name} ({_columns(ROLLUP_COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join(f'${number}' for number in range(1, len(ROLLUP_COLUMNS) + 1))})"
        f" ON CONFLICT ({_columns(_ROLLUP_KEY)}) DO UPDATE SET {_rollup_updates()}"
    )
    _LAST_USED = (
        f"UPDATE {_KEY_TABLE} SET last_used_at = $2"  # noqa: S608
        " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"
    )

    def insert_records(
        self, connection: Connection, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not rows:
            return rows
        records = _JSON.encode(rows).decode()
        result = connection.exec_driver_sql(self._INSERT, (records,))
        added = set(result.scalars().all())  # all() fetches at once, not row by row
        if len(added) == len(rows):
            return rows
        return _first_of_each_id(rows, {row["id"] for row in rows} - added)

    def upsert_rollups(self, connection: Connection, rollups: Sequence[tuple[Any, ...]]) -> None:
        if rollups:
            connection.exec_driver_sql(self._UPSERT, list(rollups))

    def update_last_used(
        self, connection: Connection, stamps: Sequence[tuple[str, datetime]]
    ) -> None:
        if stamps:
            connection.exec_driver_sql(self._LAST_USED, list(stamps))


_STATEMENTS: dict[str, UsageStatements] = {
    "sqlite": SqliteStatements(),
    "postgresql": PostgresStatements(),
}


def _first_of_each_id(rows: list[dict[str, Any]], skipped: set[str]) -> list[dict[str, Any]]:
    """``rows`` without those whose ids are in ``skipped`` or repeat an earlier row's."""
    seen = set(skipped)
    kept = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            kept.append(row)
    return kept
