"""The live route table, and reloading it without a restart (SIGHUP or the admin API).

Routes come from the ``routes`` setting (fixed for the process) and from the routes file (read
again on every reload; a route there replaces a setting's route of the same name). A reload
builds and checks a whole new table and swaps it in with one assignment: a request plans with
the old table or the new one, never a mix. A reload that fails keeps the old table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xrouter.routing.routes import (
    RouteConfig,
    RoutesError,
    RouteTable,
    compile_routes,
    read_routes_file,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    routes: int
    loaded_at: float


class LiveRoutes:
    """Holds the current ``RouteTable``; ``table`` is what the planner reads."""

    def __init__(
        self,
        configured: Mapping[str, RouteConfig],
        routes_file: Path | None,
        providers: Iterable[str],
    ) -> None:
        self._configured = dict(configured)
        self.routes_file = routes_file
        self._providers = tuple(providers)
        self.table = RouteTable()
        self.loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._signalled: set[asyncio.Task[None]] = set()

    def current(self) -> RouteTable:
        return self.table

    def load(self) -> ReloadResult:
        """Build the table from the setting and the file; ``RoutesError`` if either is wrong."""
        configs = dict(self._configured)
        if self.routes_file is not None:
            configs.update(read_routes_file(self.routes_file))
        table = compile_routes(configs, self._providers)
        self.table = table
        self.loaded_at = time.time()
        return ReloadResult(len(table), self.loaded_at)

    async def reload(self) -> ReloadResult:
        """Load again, off the event loop (the file is read in a thread); one at a time."""
        async with self._lock:
            try:
                result = await asyncio.to_thread(self.load)
            except RoutesError as error:
                log.error("routes not reloaded, keeping the current ones: %s", error)
                raise
            log.info("routes reloaded: %d routes", result.routes)
            return result

    def install_sighup(self) -> bool:
        """Reload on SIGHUP. Only possible in the main thread (it is, under ``xrouter serve``);
        returns whether the handler was installed."""
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            task = loop.create_task(self._reload_quietly(), name="xrouter-routes-reload")
            self._signalled.add(task)
            task.add_done_callback(self._signalled.discard)

        try:
            loop.add_signal_handler(signal.SIGHUP, on_signal)
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):
            return False
        return True

    def remove_sighup(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(RoutesError):  # logged by reload()
            await self.reload()
