"""``xrouter users`` and ``xrouter oauth-clients``: accounts and OAuth clients from the shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.clients import ClientService
from xrouter.auth.passwords import Passwords
from xrouter.auth.users import UserService
from xrouter.errors import InvalidRequestError
from xrouter.keys.hashing import KeyHasher, load_pepper
from xrouter.settings import ConfigurationError, Settings
from xrouter.storage.database import create_engine, redacted, session_factory
from xrouter.storage.schema_version import migrate_embedded


def add_user_arguments(parser: argparse.ArgumentParser) -> None:
    """``xrouter users create --email E [--admin] [--password-stdin]``."""
    commands = parser.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create a user (asks for the password)")
    create.add_argument("--email", required=True, help="the sign-in email address")
    create.add_argument("--admin", action="store_true", help="make the user an administrator")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    create.add_argument("--json", action="store_true", help='print {"id", "email", "is_admin"}')


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """``xrouter oauth-clients create --name N --redirect-uri U [...]`` and ``list``."""
    commands = parser.add_subparsers(dest="clients_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="register an OAuth client")
    create.add_argument("--name", required=True, help="shown to users on the consent page")
    create.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        dest="redirect_uris",
        help="an exact redirect URI (repeat for several)",
    )
    create.add_argument(
        "--confidential",
        action="store_true",
        help="give the client a secret (shown once); needed for token introspection",
    )
    create.add_argument("--json", action="store_true", help="print the client as JSON")
    listing = commands.add_parser("list", help="list registered clients")
    listing.add_argument("--json", action="store_true", help="print a JSON array")


def run_users(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``xrouter users ...``; return the exit code."""
    return _guarded(settings, lambda sessions, pepper: _users(args, sessions))


def run_clients(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``xrouter oauth-clients ...``; return the exit code."""
    return _guarded(settings, lambda sessions, pepper: _clients(args, sessions, pepper))


Command = Callable[[async_sessionmaker[AsyncSession], bytes], Awaitable[int]]


def _guarded(settings: Settings, command: Command) -> int:
    try:
        return asyncio.run(_with_database(settings, command))
    except (InvalidRequestError, ConfigurationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
    except (SQLAlchemyError, OSError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        hint = "" if settings.is_embedded_database else " (did you run `xrouter db upgrade`?)"
        print(
            f"error: database {redacted(settings.database_url)}: {first_line}{hint}",
            file=sys.stderr,
        )
    return 1


async def _with_database(settings: Settings, command: Command) -> int:
    await migrate_embedded(settings)
    engine = create_engine(settings.database_url)
    try:
        return await command(session_factory(engine), load_pepper(settings))
    finally:
        await engine.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        password = getpass.getpass("Password: ")
        repeated = getpass.getpass("Repeat the password: ")
    except EOFError:
        # No terminal and nothing on standard input (a script, a container without -t).
        raise ValueError(
            "no password given; without a terminal, pipe it in with --password-stdin"
        ) from None
    if repeated != password:
        raise ValueError("the passwords differ")
    return password


async def _users(args: argparse.Namespace, sessions: async_sessionmaker[AsyncSession]) -> int:
    password = _read_password(args.password_stdin)
    user = await UserService(sessions, Passwords()).create(
        args.email, password, is_admin=args.admin
    )
    if args.json:
        print(json.dumps({"id": user.id, "email": user.email, "is_admin": user.is_admin}))
    else:
        role = "administrator" if user.is_admin else "user"
        print(f"created {role} {user.email} ({user.id})")
    return 0


async def _clients(
    args: argparse.Namespace, sessions: async_sessionmaker[AsyncSession], pepper: bytes
) -> int:
    service = ClientService(sessions, KeyHasher(pepper))
    if args.clients_command == "list":
        clients = await service.list()
        if args.json:
            rows = [
                {
                    "client_id": client.id,
                    "name": client.name,
                    "redirect_uris": list(client.redirect_uris),
                    "confidential": client.confidential,
                    "active": client.active,
                }
                for client in clients
            ]
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        for client in clients:
            print(f"{client.id}  {client.name}  {' '.join(client.redirect_uris)}")
        return 0
    created = await service.create(args.name, args.redirect_uris, confidential=args.confidential)
    info = created.info
    if args.json:
        body = {"client_id": info.id, "name": info.name, "redirect_uris": list(info.redirect_uris)}
        if created.secret:
            body["client_secret"] = created.secret
        print(json.dumps(body, ensure_ascii=False))
        return 0
    print(f"client_id: {info.id}")
    if created.secret:
        print(f"client_secret: {created.secret}")
        print("Store the secret now: it cannot be shown again.", file=sys.stderr)
    return 0
