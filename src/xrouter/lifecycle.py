"""Graceful drain: on SIGTERM the instance first reports itself not ready, keeps serving for
a while so a load balancer stops sending it traffic, and only then lets the server stop
(which finishes in-flight requests and streams and flushes usage)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> None:
        """Wrap the server's SIGTERM handler (call from the main thread, after the server
        installed its own). SIGINT stays immediate: it is a developer's Ctrl-C."""
        if self.seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: FrameType | None) -> None:
            if self.draining or not callable(previous):
                # A second SIGTERM stops at once.
                if callable(previous):
                    previous(signum, frame)
                return
            self.draining = True
            log.warning("SIGTERM: draining for %.1f s before shutting down", self.seconds)
            loop.call_soon_threadsafe(loop.call_later, self.seconds, previous, signum, frame)

        signal.signal(signal.SIGTERM, on_term)
