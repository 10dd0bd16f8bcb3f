"""Stopping the background tasks that components keep (refreshers, subscribers, writers)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def consume_failure(task: asyncio.Task[Any]) -> None:
    """Done callback of a task whose failure belongs to whoever awaits it, when nobody may:
    reading the exception keeps asyncio from logging it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (None: nothing to stop) and wait until each has ended."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
