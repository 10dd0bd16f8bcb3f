"""Runs the app under uvicorn (uvloop + httptools)."""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.types import ASGIApp

from xrouter.app import create_app
from xrouter.logs import configure_logging
from xrouter.observability.multiprocess import shared_directory
from xrouter.settings import Settings, load_settings


def app_from_environment() -> ASGIApp:
    """Factory for worker processes: each builds its own settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, handle_signals=True)


def serve(settings: Settings) -> None:
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
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
        uvicorn.run(create_app(settings, handle_signals=True), **common)
