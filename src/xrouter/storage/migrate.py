"""Run the packaged Alembic migrations, configured in code (no alembic.ini).

Applying migrations: ``xrouter db upgrade`` (or ``upgrade(url)`` / ``await upgrade_async(url)``).

Making a new revision (developers): change ``xrouter/storage/models.py``, then run::

    .venv/bin/python -m xrouter.storage.migrate revision -m "add users" --autogenerate

Without ``--database-url`` the comparison runs against a throwaway SQLite database migrated to
head; pass ``--database-url postgresql+asyncpg://...`` to compare against PostgreSQL. The new
file lands in ``xrouter/storage/migrations/versions/`` numbered after the latest one
(``0002_add_users.py``). Review it (autogenerate misses renames and server defaults), run
``ruff format`` on it, and keep its operations valid on both databases (SQLite runs them in
batch mode).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from xrouter.logs import configure_logging
from xrouter.storage.database import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration pointing at the packaged migrations and ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # Passed as an attribute, not an option: options go through configparser interpolation,
    # which would choke on a '%' in a password.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``. Not for use inside a running event loop."""
    asyncio.run(upgrade_async(database_url, revision))


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the latest)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_on, database_url, revision)
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection, database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    return asyncio.run(current_revision_async(database_url))


async def current_revision_async(database_url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    """The latest revision shipped with this version of XRouter."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def make_revision(message: str, *, autogenerate: bool, database_url: str | None = None) -> None:
    """Write a new revision file numbered after the latest one (developer tool)."""
    latest = head_revision()
    next_id = f"{int(latest) + 1:04d}" if latest and latest.isdigit() else "0001"
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'compare.db'}"
        if autogenerate:
            upgrade(url)
        command.revision(
            alembic_config(url), message=message, autogenerate=autogenerate, rev_id=next_id
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m xrouter.storage.migrate revision -m MESSAGE [--autogenerate]``; and
    ``... upgrade`` with the database URL on stdin, which ``xrouter serve`` runs as a child
    process (storage/schema_version.py) so that the serving process never imports Alembic."""
    parser = argparse.ArgumentParser(prog="python -m xrouter.storage.migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write a new migration file")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true")
    revision.add_argument("--database-url", default=None)
    migrate = commands.add_parser("upgrade", help="migrate the database named on stdin to head")
    migrate.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.command == "upgrade":
        configure_logging(args.log_level)
        upgrade(sys.stdin.read().strip())
        return 0
    make_revision(args.message, autogenerate=args.autogenerate, database_url=args.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
