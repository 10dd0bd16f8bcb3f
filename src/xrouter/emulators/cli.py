"""``xrouter emulate``: arguments and entry point for running an emulator in the foreground."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from xrouter.emulators.options import SUPPORTED_ERROR_STATUSES, EmulatorOptions
from xrouter.emulators.server import serve_forever

DEFAULT_PORTS = {"gigachat": 8090, "yandex": 8091}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's arguments to ``parser`` (the ``emulate`` subcommand's)."""
    defaults = EmulatorOptions()
    parser.add_argument("kind", choices=sorted(DEFAULT_PORTS), help="which provider to emulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=None, help="port (default 8090 for gigachat, 8091 for yandex)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=defaults.latency_ms, help="delay before answering"
    )
    parser.add_argument(
        "--stream-chunks",
        type=int,
        default=defaults.stream_chunks,
        help="content chunks in a streamed reply",
    )
    parser.add_argument(
        "--stream-delay-ms",
        type=float,
        default=defaults.stream_delay_ms,
        help="delay between streamed chunks",
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=defaults.error_rate,
        help="fraction of API requests answered with an injected error (0..1)",
    )
    parser.add_argument(
        "--error-status",
        type=int,
        choices=sorted(SUPPORTED_ERROR_STATUSES),
        default=defaults.error_status,
        help="HTTP status of injected errors",
    )
    parser.add_argument(
        "--token-ttl-seconds",
        type=float,
        default=defaults.token_ttl_seconds,
        help="access token lifetime (GigaChat OAuth tokens, Yandex IAM tokens)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the error injection"
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="yandex: also serve the gRPC API (yandex-cloud-ml-sdk) on this port",
    )
    parser.add_argument(
        "--service-account-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="yandex: an authorized key JSON whose JWTs /iam/v1/tokens accepts (repeatable)",
    )


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """Build ``EmulatorOptions`` from parsed arguments; raises ValueError on invalid values."""
    return EmulatorOptions(
        latency_ms=args.latency_ms,
        stream_chunks=args.stream_chunks,
        stream_delay_ms=args.stream_delay_ms,
        error_rate=args.error_rate,
        error_status=args.error_status,
        token_ttl_seconds=args.token_ttl_seconds,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Run the emulator named by ``args.kind`` until interrupted; returns the exit status."""
    try:
        options = options_from_args(args)
    except ValueError as error:
        print(f"xrouter emulate: {error}")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.kind != "yandex" and (args.grpc_port is not None or args.service_account_key):
        print("xrouter emulate: --grpc-port and --service-account-key are for yandex only")
        return 2
    port = args.port if args.port is not None else DEFAULT_PORTS[args.kind]
    try:
        serve_forever(args.kind, args.host, port, options, args.grpc_port, args.service_account_key)
    except (OSError, ValueError, KeyError) as error:
        print(f"xrouter emulate: {error}")
        return 2
    return 0
