"""Whether a database is at the schema revision this version ships, without importing Alembic.

``xrouter serve`` migrates the embedded database before it serves. Alembic (with Mako) would
stay in the serving process for its whole life, about 11 MiB of a worker's memory, to run
once; so the serving process only reads the revisions here, and when they differ the
migration runs in a child process (``python -m xrouter.storage.migrate upgrade``).
"""

from __future__ import annotations

import asyncio
import functools
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from xrouter.settings import Settings
from xrouter.storage.database import create_engine

VERSIONS_DIR = Path(__file__).resolve().parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"
# The assignments every revision file starts with (the template in migrations/script.py.mako).
_REVISION = re.compile(r"^revision(?::[^=]*)? = ['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?::[^=]*)? = (.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


@functools.cache
def shipped_heads() -> frozenset[str]:
    """The head revisions of the packaged migrations: those no other revision follows."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        down = _DOWN_REVISION.search(source)
        if down is not None:
            followed.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - followed)


async def database_revisions(database_url: str) -> frozenset[str]:
    """The revisions the database is at: empty if it was never migrated."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_read_revisions)
    finally:
        await engine.dispose()


def _read_revisions(connection: Connection) -> frozenset[str]:
    if not inspect(connection).has_table(VERSION_TABLE):
        return frozenset()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return frozenset(row[0] for row in rows)


def is_current(database_url: str) -> bool:
    """Whether the database is at the shipped head. Not for use inside a running event loop."""
    return asyncio.run(database_revisions(database_url)) == shipped_heads()


async def migrate_embedded(settings: Settings) -> None:
    """Bring the embedded database to the current schema before a CLI command (it needs no
    setup step). Alembic is imported only here, when it runs: `xrouter serve` builds every
    command's parser, and Alembic would stay in the serving process's memory."""
    if settings.is_embedded_database:
        from xrouter.storage.migrate import upgrade_async

        await upgrade_async(settings.database_url)


def upgrade_in_child(database_url: str, log_level: str) -> bool:
    """Migrate the database to the latest revision in a child process; False if it failed
    (the child has said why on stderr). The URL goes through a pipe, never the process list."""
    command = [sys.executable, "-m", "xrouter.storage.migrate", "upgrade", "--log-level", log_level]
    child = subprocess.run(command, input=database_url, text=True, check=False)  # noqa: S603
    return child.returncode == 0
