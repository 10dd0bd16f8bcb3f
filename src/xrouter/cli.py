"""The ``xrouter`` command: serve, emulate, db, keys, users, oauth-clients."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from xrouter import __version__
from xrouter.auth import cli as auth_cli
from xrouter.emulators import cli as emulate_cli
from xrouter.keys import cli as keys_cli
from xrouter.settings import ConfigurationError, Settings, load_settings
from xrouter.storage import cli as db_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrouter", description="OpenAI-compatible gateway for GigaChat and YandexGPT."
    )
    parser.add_argument("--version", action="version", version=f"xrouter {__version__}")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", help="YAML file with settings (also XROUTER_CONFIG); the environment wins"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the gateway", parents=[config])
    serve.add_argument("--host", help="address to listen on (XROUTER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (XROUTER_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (XROUTER_WORKERS, default 1)")

    emulate = commands.add_parser("emulate", help="serve a provider emulator (no credentials)")
    emulate_cli.add_arguments(emulate)

    database = commands.add_parser("db", help="database migrations", parents=[config])
    db_cli.add_arguments(database)

    keys = commands.add_parser(
        "keys", help="create, list, change and revoke API keys; show their usage", parents=[config]
    )
    keys_cli.add_arguments(keys)

    users = commands.add_parser("users", help="create web UI / OAuth accounts", parents=[config])
    auth_cli.add_user_arguments(users)
    clients = commands.add_parser(
        "oauth-clients", help="register and list OAuth clients", parents=[config]
    )
    auth_cli.add_client_arguments(clients)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulate":
        return emulate_cli.run(args)
    try:
        settings = _settings(args)
    except ConfigurationError as error:
        print(f"xrouter: invalid configuration: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings)
    if args.command == "db":
        return db_cli.run(args, settings)
    if args.command == "users":
        return auth_cli.run_users(args, settings)
    if args.command == "oauth-clients":
        return auth_cli.run_clients(args, settings)
    return keys_cli.run(args, settings)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "workers")
        if getattr(args, name, None) is not None
    }
    # Worker processes rebuild settings from the environment, so overrides travel through it.
    for name, value in overrides.items():
        os.environ[f"XROUTER_{name.upper()}"] = str(value)
    return load_settings(args.config)


def _serve(settings: Settings) -> int:
    from xrouter.logs import configure_logging
    from xrouter.preflight import check_before_serving
    from xrouter.server import serve
    from xrouter.storage.schema_version import is_current, upgrade_in_child

    # Routes and the address are checked before anything starts, so a wrong routes file, a
    # route to a provider that is not enabled or a port in use is one line, as a wrong setting is.
    try:
        check_before_serving(settings)
    except ConfigurationError as error:
        print(f"xrouter: invalid configuration: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # In a child process: Alembic would otherwise stay in this one's memory while it serves.
    if (
        settings.is_embedded_database
        and not is_current(settings.database_url)
        and not upgrade_in_child(settings.database_url, settings.log_level)
    ):
        print("xrouter: migrating the embedded database failed (see above)", file=sys.stderr)
        return 1
    print(_banner(settings), file=sys.stderr, flush=True)
    serve(settings)
    return 0


def _banner(settings: Settings) -> str:
    url = f"http://{settings.host}:{settings.port}"
    lines = [f"XRouter {__version__} serving on {url}  (API docs: {url}/docs)"]
    emulated = [
        name
        for name, configured in (
            ("gigachat", settings.gigachat_configured),
            ("yandex", settings.yandex_configured),
        )
        if not configured
    ]
    if emulated and settings.emulate_missing_providers:
        lines.append(
            f"No credentials for: {', '.join(emulated)}. Built-in EMULATORS answer for them "
            "(synthetic replies); set the credentials to use the real services."
        )
    lines.append(
        "Create an API key in another shell:  .venv/bin/xrouter keys create --name my-first-key"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
