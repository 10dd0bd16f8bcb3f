"""Running an emulator: in-process on a free port (tests, the gateway) or as a foreground server."""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from xrouter.emulators import gigachat
from xrouter.emulators.options import EmulatorOptions

if TYPE_CHECKING:
    import grpc

EmulatorKind = Literal["gigachat", "yandex"]

# Credentials the gateway uses when it serves a provider from an in-process emulator.
GIGACHAT_EMULATOR_CREDENTIALS = base64.b64encode(b"xrouter-emulator:emulator-secret").decode()
YANDEX_EMULATOR_API_KEY = "xrouter-emulator-api-key"
YANDEX_EMULATOR_FOLDER_ID = "b1gxrouteremulator"
# Append to ``RunningEmulator.url``: GigaChat's API base and OAuth URL, and Yandex's base URL.
GIGACHAT_API_PATH = gigachat.API_PREFIX
GIGACHAT_OAUTH_PATH = gigachat.OAUTH_PATH
YANDEX_API_PATH = ""

_KINDS = ("gigachat", "yandex")
_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ConnectionStats:
    """Requests being handled when their client closed the connection (the handler was then
    cancelled, as a real server stops working for a client that left)."""

    client_disconnects: int = 0


CONNECTIONS_KEY = web.AppKey("emulator_connections", ConnectionStats)


@web.middleware
async def _count_disconnects(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # Cancelled from outside (aiohttp, on connection loss), not a handler giving up itself.
        if task is not None and task.cancelling():
            request.app[CONNECTIONS_KEY].client_disconnects += 1
        raise


@dataclass(slots=True)
class RunningEmulator:
    """An emulator listening on ``url``; ``close()`` stops it."""

    url: str
    port: int
    app: web.Application
    runner: web.AppRunner
    # The Yandex emulator's gRPC face, when it was asked for.
    grpc_port: int | None = None
    grpc_server: grpc.aio.Server | None = None

    @property
    def connections(self) -> ConnectionStats:
        return self.app[CONNECTIONS_KEY]

    async def close(self) -> None:
        """Stop listening and release the port(s)."""
        if self.grpc_server is not None:
            await self.grpc_server.stop(None)
        await self.runner.cleanup()


def create_app(kind: EmulatorKind, options: EmulatorOptions) -> web.Application:
    """The aiohttp application of the ``kind`` emulator."""
    if kind not in _KINDS:
        raise ValueError(f"unknown emulator kind {kind!r}")
    if kind == "yandex":
        app: web.Application = _yandex().create_app(options)
        return app
    return gigachat.create_app(options)


def _yandex() -> ModuleType:
    """The YandexGPT emulator, imported on first use: its protobuf messages and gRPC face
    add tens of MiB to every process that imports this module (the gateway does, for the
    credentials above) but runs no Yandex emulator."""
    from xrouter.emulators import yandex

    return yandex


async def start_emulator(
    kind: EmulatorKind,
    options: EmulatorOptions | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    grpc_port: int | None = None,
    service_account_keys: Sequence[Path] = (),
) -> RunningEmulator:
    """Start an emulator in the running event loop; port 0 picks a free port.

    Yandex only: ``grpc_port`` also starts the gRPC face (0 picks a free port), and
    ``service_account_keys`` are authorized key files its IAM endpoint accepts.
    """
    if kind != "yandex" and (grpc_port is not None or service_account_keys):
        raise ValueError("only the yandex emulator has a gRPC face and service accounts")
    if kind == "yandex":
        app = _yandex().create_app(options or EmulatorOptions(), service_account_keys)
    else:
        app = create_app(kind, options or EmulatorOptions())
    app[CONNECTIONS_KEY] = ConnectionStats()
    app.middlewares.append(_count_disconnects)
    # No access log: it would dominate the cost of a request under load tests.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    url_host = f"[{host}]" if ":" in host else host
    running = RunningEmulator(
        url=f"http://{url_host}:{bound_port}", port=bound_port, app=app, runner=runner
    )
    if grpc_port is not None:
        try:
            yandex = _yandex()
            running.grpc_server, running.grpc_port = await yandex.start_grpc(app, host, grpc_port)
        except BaseException:
            await runner.cleanup()
            raise
    return running


async def _serve(
    kind: EmulatorKind,
    host: str,
    port: int,
    options: EmulatorOptions,
    grpc_port: int | None,
    service_account_keys: Sequence[Path],
) -> None:
    emulator = await start_emulator(
        kind, options, host, port, grpc_port=grpc_port, service_account_keys=service_account_keys
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    if kind == "gigachat":
        _logger.info(
            "GigaChat emulator: API %s%s, OAuth %s%s",
            emulator.url,
            GIGACHAT_API_PATH,
            emulator.url,
            GIGACHAT_OAUTH_PATH,
        )
    else:
        _logger.info(
            "YandexGPT emulator: base URL %s, OpenAI-compatible %s/v1, IAM %s%s",
            emulator.url,
            emulator.url,
            emulator.url,
            _yandex().IAM_TOKENS_PATH,
        )
        if emulator.grpc_port is not None:
            _logger.info("YandexGPT emulator: gRPC on %s:%d", host, emulator.grpc_port)
    try:
        await stop.wait()
    finally:
        _logger.info("stopping the %s emulator", kind)
        await emulator.close()


def serve_forever(
    kind: EmulatorKind,
    host: str,
    port: int,
    options: EmulatorOptions,
    grpc_port: int | None = None,
    service_account_keys: Sequence[Path] = (),
) -> None:
    """Serve an emulator in the foreground until SIGINT or SIGTERM, on uvloop when installed."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(kind, host, port, options, grpc_port, service_account_keys))
