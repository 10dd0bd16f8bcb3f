"""Cancels upstream work when the client goes away, instead of finishing it for nobody.

Once the request body has been read, the next ASGI ``receive()`` returns only when the client
disconnects; racing it against the upstream call turns a closed client connection into a
cancelled upstream request (aiohttp then closes that connection too). After the response has
started, ``EventStreamResponse`` does the same for streams.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    because the client left first.

    ``work`` runs in the caller's task; one watcher task waits for the disconnect and cancels
    the caller (one task per request instead of two and an ``asyncio.wait``)."""
    current = asyncio.current_task()
    assert current is not None
    waiting = True
    left = False

    async def watch() -> None:
        nonlocal left
        # A receive() that fails has lost the client just the same.
        with contextlib.suppress(Exception):
            await _disconnected(receive)
        if waiting:
            left = True
            current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except BaseException as error:
        # The watcher cancelled ``work``: the client left, and the upstream call is closed by
        # now (the cancellation ran through it). A cancellation from elsewhere too goes on.
        cancelled_too = isinstance(error, asyncio.CancelledError) and current.cancelling() > 1
        if left and not cancelled_too:
            raise ClientDisconnectedError(
                "The client closed the connection before the answer."
            ) from None
        raise
    finally:
        waiting = False
        watcher.cancel()
        if left:
            current.uncancel()  # the watcher's request, answered above
