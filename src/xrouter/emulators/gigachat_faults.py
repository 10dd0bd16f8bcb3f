"""Failures a test switches on while the GigaChat emulator runs: the real service's bad days.

``app[FAULTS_KEY]`` is read on every request, so a test changes it between calls:
``faults.status = 503`` answers API requests with GigaChat's 503 body, ``faults.mode =
"reset"`` drops the connection, and ``faults.remaining = 1`` limits either to the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

# reset: close the connection without an answer. stall: wait ``stall_seconds`` first.
# malformed: 200 whose body is not GigaChat's JSON (or a broken event in a stream).
# truncated: the body (or the stream) ends before it is complete.
# hold: a stream sends its first event, then waits until ``release()`` (or ``stall_seconds``).
FaultMode = Literal["reset", "stall", "malformed", "truncated", "hold"]
MALFORMED_BODY = b"<html><body>502 Bad Gateway</body></html>"


@dataclass(slots=True)
class GigaChatFaults:
    """What the emulator does wrong, until ``remaining`` API requests have been spoiled."""

    # Answer API requests with this HTTP status and GigaChat's error body.
    status: int | None = None
    # Answer token requests (OAuth and /token) with this status and the OAuth error body.
    oauth_status: int | None = None
    mode: FaultMode | None = None
    stall_seconds: float = 30.0
    # Retry-After sent with an injected status (429 always carries one by default).
    retry_after: str | None = None
    # Chat answers end with this finish reason ("blacklist", "error") instead of their own.
    finish_reason: str | None = None
    # Lifetime of tokens issued from now on, overriding ``EmulatorOptions.token_ttl_seconds``.
    token_ttl_seconds: float | None = None
    # API requests still affected by ``status`` and ``mode``; None: every one.
    remaining: int | None = None
    # The streams being held, each with the loop that serves it and the event that lets it go.
    _held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=list, repr=False
    )

    @property
    def holding(self) -> bool:
        """True while a "hold" stream waits for ``release()``."""
        return bool(self._held)

    def take(self) -> tuple[int | None, FaultMode | None]:
        """The status and mode for the API request being handled, counting it."""
        if self.status is None and self.mode is None:
            return None, None
        if self.remaining is not None:
            if self.remaining <= 0:
                return None, None
            self.remaining -= 1
        return self.status, self.mode

    def release(self) -> None:
        """Let the streams held right now go on; safe to call from any thread.

        Each hold waits on an event of its own, so a release that arrives after its stream
        has gone (cancelled by a client that left) cannot let a later stream through.
        """
        for loop, released in tuple(self._held):
            loop.call_soon_threadsafe(released.set)

    async def hold(self, first: Awaitable[None]) -> None:
        """Hold a stream: await ``first`` (sending its first event), then wait for
        ``release()`` or ``stall_seconds``. ``holding`` is true from before ``first`` starts,
        so a client that has received the first event always sees it."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._held.append(waiter)
        try:
            await first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), self.stall_seconds)
        finally:
            self._held.remove(waiter)

    def clear(self) -> None:
        """Back to a healthy emulator; held streams go on."""
        self.status = self.oauth_status = self.mode = None
        self.retry_after = self.finish_reason = None
        self.token_ttl_seconds = self.remaining = None
        self.release()


FAULTS_KEY = web.AppKey("gigachat_faults", GigaChatFaults)


async def reset_connection(request: web.Request) -> web.StreamResponse:
    """Drop the TCP connection without answering, as a crashed balancer would."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # The answer can no longer be written; raising ends the handler without aiohttp trying.
    raise asyncio.CancelledError


async def stall(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def truncated_json(request: web.Request, body: bytes) -> web.StreamResponse:
    """Announce ``body`` in full, send half of it, and drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return response


async def held_stream(
    request: web.Request, faults: GigaChatFaults, headers: dict[str, str], frames: list[bytes]
) -> web.StreamResponse:
    """Send the first frame, hold until released, then send the rest."""
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await faults.hold(response.write(frames[0]))
    for frame in frames[1:]:
        await response.write(frame)
    await response.write_eof()
    return response
