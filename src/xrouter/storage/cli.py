"""``xrouter db``: apply migrations and show the schema revision."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from xrouter.settings import Settings
from xrouter.storage.database import redacted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``upgrade`` and ``current`` subcommands to ``parser``."""
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade_parser = commands.add_parser(
        "upgrade", help="apply migrations (to the latest revision unless --revision is given)"
    )
    upgrade_parser.add_argument("--revision", default="head", help="target revision (head)")
    commands.add_parser("current", help="print the revision the database is at")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the chosen ``xrouter db`` subcommand; return the process exit code."""
    # Imported here, not with the parser that `xrouter serve` builds: Alembic would stay in
    # the serving process's memory.
    from alembic.util import CommandError

    from xrouter.storage.migrate import current_revision, head_revision, upgrade

    url = settings.database_url
    try:
        if args.db_command == "upgrade":
            upgrade(url, args.revision)
            print(f"{redacted(url)}: at revision {current_revision(url) or 'none'}")
            return 0
        if args.db_command == "current":
            current = current_revision(url)
            head = head_revision()
            note = "" if current == head else f" (latest is {head}; run `xrouter db upgrade`)"
            print(f"{current or 'none'}{note}")
            return 0
    except (SQLAlchemyError, OSError, CommandError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: database {redacted(url)}: {first_line}", file=sys.stderr)
        return 1
    print(f"error: unknown command {args.db_command!r}", file=sys.stderr)
    return 2
