"""``xrouter keys``: create, list, update, revoke API keys and show their usage.

The running gateway picks up changes made here on its next key-cache refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from xrouter.errors import InvalidRequestError
from xrouter.keys.cache import INFERENCE, MANAGEMENT
from xrouter.keys.cli_usage import print_usage
from xrouter.keys.events import KeyEvents
from xrouter.keys.hashing import KeyHasher, load_pepper
from xrouter.keys.service import (
    UNCHANGED,
    KeyChanges,
    KeyInfo,
    KeyNotFoundError,
    KeyService,
    Unchanged,
)
from xrouter.redis_url import connect_redis
from xrouter.settings import ConfigurationError, Settings
from xrouter.storage.database import create_engine, redacted, session_factory
from xrouter.storage.schema_version import migrate_embedded
from xrouter.usage.periods import GRANULARITIES, Calendar
from xrouter.usage.service import UsageService


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``create``, ``list``, ``update``, ``usage`` and ``revoke`` subcommands."""
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--owner", default=None, help=_OWNER)
    create.add_argument("--json", action="store_true", help='print {"id", "key", "name"}')
    create.add_argument(
        "--management",
        action="store_true",
        help="a management key: calls the key API (/api/keys, /api/v1/keys), not /v1",
    )
    for flag, what in _LIMIT_FLAGS:
        create.add_argument(f"--{flag}", type=int, default=None, metavar="N", help=what)
    create.add_argument("--budget-rub", type=float, default=None, metavar="B", help=_BUDGET)
    create.add_argument("--models", type=_patterns, default=None, metavar="P[,P...]", help=_MODELS)
    create.add_argument("--expires", type=_moment, default=None, metavar="ISO", help=_EXPIRES)
    create.add_argument(
        "--log-content", action=argparse.BooleanOptionalAction, default=False, help=_LOG_CONTENT
    )
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    update = commands.add_parser("update", help="rename a key or change its limits and rules")
    update.add_argument("id", help="the key id (key_...)")
    update.add_argument("--name", default=UNCHANGED, help="a new name")
    for flag, what in _LIMIT_FLAGS:
        update.add_argument(
            f"--{flag}",
            type=_limit_or_default,
            default=UNCHANGED,
            metavar="N|default",
            help=f"{what}; 'default' returns to the configured default",
        )
    update.add_argument(
        "--budget-rub", type=_budget_or_none, default=UNCHANGED, metavar="B|none", help=_BUDGET
    )
    update.add_argument(
        "--models", type=_patterns_or_all, default=UNCHANGED, metavar="P[,P...]|all", help=_MODELS
    )
    update.add_argument(
        "--expires", type=_moment_or_never, default=UNCHANGED, metavar="ISO|never", help=_EXPIRES
    )
    update.add_argument(
        "--log-content", action=argparse.BooleanOptionalAction, default=UNCHANGED, help=_LOG_CONTENT
    )
    state = update.add_mutually_exclusive_group()
    state.add_argument(
        "--disable",
        dest="disabled",
        action="store_true",
        default=UNCHANGED,
        help="refuse the key's requests until it is enabled again",
    )
    state.add_argument("--enable", dest="disabled", action="store_false", help="accept them again")
    usage = commands.add_parser("usage", help="a key's requests, tokens and cost over time")
    usage.add_argument("id", help="the key id (key_...)")
    usage.add_argument(
        "--granularity", choices=GRANULARITIES, default="day", help="bucket size (default: day)"
    )
    usage.add_argument(
        "--from", dest="start", type=_moment, default=None, metavar="ISO", help=_RANGE_START
    )
    usage.add_argument(
        "--to", dest="end", type=_moment, default=None, metavar="ISO", help="end (default: now)"
    )
    usage.add_argument("--json", action="store_true", help="print the series as JSON")
    revoke = commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key id (key_...)")


_BUDGET = "spending budget per calendar month, in roubles"
_MODELS = "models the key may use: comma-separated ids or patterns, e.g. 'gigachat/*'"
_EXPIRES = "when the key stops working, e.g. 2026-01-31T23:59:59+03:00"
_OWNER = "who the key belongs to: a user id (usr_...), or any label; limits per owner apply"
_RANGE_START = "start, with a time zone (default: the last 60 minutes, 48 hours or 31 days)"
_LOG_CONTENT = "log the key's prompts and completions (logger xrouter.content)"


def _patterns(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _patterns_or_all(text: str) -> list[str] | None:
    return None if text.strip().lower() == "all" else _patterns(text)


def _budget_or_none(text: str) -> float | None:
    if text.strip().lower() in ("none", "default"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected roubles or 'none', got {text!r}") from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. +03:00 or Z")
    return moment


def _moment_or_never(text: str) -> datetime | None:
    return None if text.strip().lower() == "never" else _moment(text)


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
    if info.monthly_budget_rub is not None:
        parts.append(f"budget={info.monthly_budget_rub:g}RUB/month")
    if info.allowed_models is not None:
        parts.append("models=" + ",".join(info.allowed_models))
    if info.log_content:
        parts.append("log-content")
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
    await migrate_embedded(settings)
    engine = create_engine(settings.database_url)
    redis_client = connect_redis(settings.redis_url) if settings.redis_url else None
    try:
        sessions = session_factory(engine)
        # With Redis, running gateways hear about the change at once (else on their next poll).
        events = KeyEvents(redis_client)
        service = KeyService(sessions, KeyHasher(load_pepper(settings)), events=events)
        if args.keys_command == "create":
            return await _create(service, args)
        if args.keys_command == "list":
            return await _list(service, args)
        if args.keys_command == "update":
            return await _update(service, args)
        if args.keys_command == "usage":
            calendar = Calendar(settings.budget_utc_offset_hours)
            return await print_usage(UsageService(sessions, calendar), service, args)
        if args.keys_command == "revoke":
            info = await service.revoke(args.id)
            print(f"revoked {info.id} ({info.name})")
            return 0
    finally:
        if redis_client is not None:
            await redis_client.aclose()
        await engine.dispose()
    print(f"error: unknown command {args.keys_command!r}", file=sys.stderr)
    return 2


async def _update(service: KeyService, args: argparse.Namespace) -> int:
    changes = KeyChanges(
        name=args.name,
        rpm=args.rpm,
        tpm=args.tpm,
        tpd=args.tpd,
        disabled=args.disabled,
        expires_at=args.expires,
        allowed_models=args.models,
        monthly_budget_rub=args.budget_rub,
        log_content=args.log_content,
    )
    info = await service.update(args.id, changes)
    print(f"updated {info.id} ({info.name}): {_limits_text(info)}; {info.status}")
    return 0


async def _create(service: KeyService, args: argparse.Namespace) -> int:
    created = await service.create(
        args.name,
        owner=args.owner,
        rpm=args.rpm,
        tpm=args.tpm,
        tpd=args.tpd,
        kind=MANAGEMENT if args.management else INFERENCE,
        monthly_budget_rub=args.budget_rub,
        allowed_models=args.models,
        expires_at=args.expires,
        log_content=args.log_content,
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
            info.status if info.kind == INFERENCE else f"{info.status} (management)",
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
        "kind": info.kind,
        "status": info.status,
        "disabled": info.disabled,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
        "allowed_models": list(info.allowed_models) if info.allowed_models is not None else None,
        "monthly_budget_rub": info.monthly_budget_rub,
        "log_content": info.log_content,
    }
