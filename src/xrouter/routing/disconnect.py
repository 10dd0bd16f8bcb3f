"""Cancels upstream work when the client goes away, instead of finishing it for nobody.

Once the request body has been read, the next ASGI ``receive()`` returns only when the client
disconnects; racing it against the upstream call turns a closed client connection into a
cancelled upstream request (aiohttp then closes that connection too). After the response has
started, Starlette's ``StreamingResponse`` does the same for streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from xrouter.errors import GatewayError

T = TypeVar("T")


class ClientDisconnectedError(GatewayError):
    """The client closed the connection before the answer (recorded as nginx's 499)."""

    status = 499
    error_type = "client_disconnected"
    default_code = "client_disconnected"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """The result of ``work``, or ``ClientDisconnectedError`` once ``work`` has been cancelled
    because the client left first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    # Wait for the cancellation to finish, so the upstream connection is closed by now.
    await asyncio.gather(task, return_exceptions=True)
    raise ClientDisconnectedError("The client closed the connection before the answer.")
