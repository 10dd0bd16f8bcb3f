"""Runs the app under uvicorn (uvloop + httptools, with the gateway's own response path)."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from xrouter.allocator import tune_allocator
from xrouter.logs import configure_logging
from xrouter.observability.multiprocess import shared_directory
from xrouter.settings import Settings, load_settings

# uvicorn's httptools protocol with a cheaper response path (see the module); named, not
# imported, so that a supervisor of several workers does not load the app's modules.
HTTP_PROTOCOL = "xrouter.gateway.http_protocol:GatewayHttpProtocol"


def app_from_environment() -> ASGIApp:
    """Factory for worker processes: each builds its own settings from the environment."""
    from xrouter.app import create_app

    settings = load_settings()
    configure_logging(settings.log_level)
    tune_allocator()
    return create_app(settings, handle_signals=True, freeze_after_start=True)


def exit_cleanly_on_sigterm() -> None:
    """Make a SIGTERM end the process with status 0 once it has drained.

    uvicorn handles SIGTERM itself (a graceful shutdown), then puts back the handler it found
    and raises the signal again; with the default handler that kills the process (status 143)
    although nothing was lost. This one is what it puts back. Call it before uvicorn starts:
    set while it serves (as in a worker's app factory), it would replace uvicorn's own.
    """

    def exit_now(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, exit_now)


def serve(settings: Settings) -> None:
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": HTTP_PROTOCOL,
        "log_config": None,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
        "proxy_headers": False,
    }
    if settings.workers > 1:
        # Every worker writes its metrics there, so any of them can answer /metrics for all.
        with shared_directory():
            uvicorn.run(
                "xrouter.server:app_from_environment",
                factory=True,
                workers=settings.workers,
                **common,
            )
    else:
        # Imported here: with several workers the supervisor only watches them, and the app's
        # modules would be tens of MiB it never uses.
        from xrouter.app import create_app

        tune_allocator()
        exit_cleanly_on_sigterm()
        app = create_app(settings, handle_signals=True, freeze_after_start=True)
        uvicorn.run(app, **common)
