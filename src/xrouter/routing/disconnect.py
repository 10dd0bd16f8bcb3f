"""Cancels upstream work when the client goes away, instead of finishing it for nobody.

Under the gateway's own HTTP protocol (``xrouter.gateway.http_protocol``) the scope carries the
``xrouter.disconnect`` extension: a callback registered there runs when the client's connection
is lost, and cancels the request's task; no task is needed. Under any other ASGI server, once the
request body has been read, the next ``receive()`` returns only when the client disconnects;
one watcher task awaits it and cancels the request's task. Either way the cancellation runs
through the upstream call (aiohttp then closes that connection too). After the response has
started, ``EventStreamResponse`` does the same for streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.types import Receive, Scope

from xrouter.errors import GatewayError

T = TypeVar("T")

# Scope extension name; its value is ``{"add": add, "discard": discard}``, each taking a
# callback without arguments.
DISCONNECT_EXTENSION = "xrouter.disconnect"


class ClientDisconnectedError(GatewayError):
    """The client closed the connection before the answer (recorded as nginx's 499)."""

    status = 499
    error_type = "client_disconnected"
    default_code = "client_disconnected"


class _Departure:
    """Whether the client left while ``work`` ran; ``leave`` cancels the request's task."""

    __slots__ = ("left", "task", "waiting")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiting = True
        self.left = False

    def leave(self) -> None:
        if self.waiting:
            self.left = True
            self.task.cancel()


async def _watch(receive: Receive, departure: _Departure) -> None:
    # A receive() that fails has lost the client just the same.
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
    departure.leave()


async def unless_disconnected(
    scope: Scope,
    receive: Receive,
    work: Awaitable[T],
    on_departure: Callable[[], object] | None = None,
) -> T:
    """The result of ``work``, or ``ClientDisconnectedError`` once ``work`` has been cancelled
    because the client left first (``on_departure`` is called then, to count it).

    ``work`` runs in the caller's task, which is cancelled when the client leaves: by a
    callback of the server's disconnect extension if the scope has one, else by one watcher
    task (one task per request instead of two and an ``asyncio.wait``)."""
    current = asyncio.current_task()
    assert current is not None
    departure = _Departure(current)
    extensions = scope.get("extensions")
    notice: dict[str, Any] | None = extensions.get(DISCONNECT_EXTENSION) if extensions else None
    watcher: asyncio.Future[None] | None = None
    if notice is None:
        watcher = asyncio.ensure_future(_watch(receive, departure))
    else:
        notice["add"](departure.leave)
    try:
        return await work
    except BaseException as error:
        # Cancelled because the client left (the upstream call is closed by now: the
        # cancellation ran through it). A cancellation from elsewhere too goes on.
        cancelled_too = isinstance(error, asyncio.CancelledError) and current.cancelling() > 1
        if departure.left and not cancelled_too:
            if on_departure is not None:
                on_departure()
            raise ClientDisconnectedError(
                "The client closed the connection before the answer."
            ) from None
        raise
    finally:
        departure.waiting = False
        if watcher is not None:
            watcher.cancel()
        else:
            assert notice is not None
            notice["discard"](departure.leave)
        if departure.left:
            current.uncancel()  # the departure's request, answered above
