"""``xrouter keys``: create, list, update and revoke API keys from the command line.

The running gateway picks up changes made here on its next key-cache refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from xrouter.errors import InvalidRequestError
from xrouter.keys.hashing import KeyHasher, load_pepper
from xrouter.keys.service import UNCHANGED, KeyInfo, KeyNotFoundError, KeyService, Unchanged
from xrouter.settings import ConfigurationError, Settings
from xrouter.storage.database import create_engine, redacted, session_factory
from xrouter.storage.migrate import upgrade_async


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``create``, ``list``, ``update`` and ``revoke`` subcommands to ``parser``."""
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--owner", default=None, help="who the key belongs to")
    create.add_argument("--json", action="store_true", help='print {"id", "key", "name"}')
    for flag, what in _LIMIT_FLAGS:
        create.add_argument(f"--{flag}", type=int, default=None, metavar="N", help=what)
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    update = commands.add_parser("update", help="change a key's rate limits")
    update.add_argument("id", help="the key id (key_...)")
    for flag, what in _LIMIT_FLAGS:
        update.add_argument(
            f"--{flag}",
            type=_limit_or_default,
            default=UNCHANGED,
            metavar="N|default",
            help=f"{what}; 'default' returns to the configured default",
        )
    revoke = commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key id (key_...)")


_LIMIT_FLAGS = (
    ("rpm", "requests per minute"),
    ("tpm", "tokens per minute"),
    ("tpd", "tokens per day"),
)


def _limit_or_default(text: str) -> int | Unchanged | None:
    if text.strip().lower() == "default":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'default', got {text!r}") from None


def _limits_text(info: KeyInfo) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (("rpm", info.rpm), ("tpm", info.tpm), ("tpd", info.tpd))
        if value is not None
    ]
    return " ".join(parts) or "default"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the chosen ``xrouter keys`` subcommand; return the process exit code."""
    try:
        return asyncio.run(_run(args, settings))
    except KeyNotFoundError as error:
        print(f"error: {error.message}", file=sys.stderr)
    except (InvalidRequestError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
    except (SQLAlchemyError, OSError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        hint = "" if settings.is_embedded_database else " (did you run `xrouter db upgrade`?)"
        print(
            f"error: database {redacted(settings.database_url)}: {first_line}{hint}",
            file=sys.stderr,
        )
    return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_embedded_database:
        # The embedded database needs no setup step: bring it to the current schema here.
        await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        service = KeyService(session_factory(engine), KeyHasher(load_pepper(settings)))
        if args.keys_command == "create":
            return await _create(service, args)
        if args.keys_command == "list":
            return await _list(service, args)
        if args.keys_command == "update":
            info = await service.update_limits(args.id, rpm=args.rpm, tpm=args.tpm, tpd=args.tpd)
            print(f"updated {info.id} ({info.name}): {_limits_text(info)}")
            return 0
        if args.keys_command == "revoke":
            info = await service.revoke(args.id)
            print(f"revoked {info.id} ({info.name})")
            return 0
    finally:
        await engine.dispose()
    print(f"error: unknown command {args.keys_command!r}", file=sys.stderr)
    return 2


async def _create(service: KeyService, args: argparse.Namespace) -> int:
    created = await service.create(
        args.name, owner=args.owner, rpm=args.rpm, tpm=args.tpm, tpd=args.tpd
    )
    if args.json:
        print(json.dumps({"id": created.info.id, "key": created.key, "name": created.info.name}))
        return 0
    print(created.key)
    print(
        f"created {created.info.id} ({created.info.name}). "
        "Store the key now: it cannot be shown again.",
        file=sys.stderr,
    )
    return 0


async def _list(service: KeyService, args: argparse.Namespace) -> int:
    keys = await service.list()
    if args.json:
        print(json.dumps([_as_json(info) for info in keys], ensure_ascii=False))
        return 0
    if not keys:
        print("no keys", file=sys.stderr)
        return 0
    rows = [("ID", "NAME", "PREFIX", "OWNER", "LIMITS", "CREATED", "STATUS")]
    rows += [
        (
            info.id,
            info.name,
            info.prefix,
            info.owner or "-",
            _limits_text(info),
            info.created_at.strftime("%Y-%m-%d %H:%M"),
            "active" if info.active else "revoked",
        )
        for info in keys
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _as_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "prefix": info.prefix,
        "owner": info.owner,
        "created_at": info.created_at.isoformat(),
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "rpm": info.rpm,
        "tpm": info.tpm,
        "tpd": info.tpd,
        "active": info.active,
    }
