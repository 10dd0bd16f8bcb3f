"""Shares circuit-breaker transitions between instances through Redis, off the request path.

An instance that opens or closes a breaker queues the transition; a background task writes it
to a Redis hash (the latest transition per target) and publishes it on a channel. Every
instance applies what it hears on the channel at once, and reads the hash every few seconds as
a safety net for messages lost while it was reconnecting. A request never waits for Redis: when
Redis is down, each instance simply keeps its own breakers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from redis.exceptions import RedisError

from xrouter.background import stop_tasks
from xrouter.pubsub import follow_channel
from xrouter.redis_url import RedisClient
from xrouter.routing.breaker import BreakerBoard, BreakerState

log = logging.getLogger(__name__)

REDIS_STATES = "xrouter:routing:breakers"
REDIS_CHANNEL = "xrouter:routing:breaker-events"
QUEUE_SIZE = 1000
REDIS_TIMEOUT_SECONDS = 2.0
_STATES = {"open": BreakerState.OPEN, "closed": BreakerState.CLOSED}


class BreakerSync:
    def __init__(self, board: BreakerBoard, client: RedisClient, poll_seconds: float) -> None:
        self._board = board
        self._redis = client
        self._poll_seconds = poll_seconds
        self.instance = os.urandom(6).hex()
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        # The newest transition applied per target (Unix time), so older news never wins.
        self._stamps: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        board.listen(self._on_transition)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="xrouter-breaker-publish"),
            asyncio.create_task(self._subscribe_forever(), name="xrouter-breaker-subscribe"),
            asyncio.create_task(self._poll_forever(), name="xrouter-breaker-poll"),
        ]

    async def close(self) -> None:
        self._closing = True
        await stop_tasks(*self._tasks)
        self._tasks.clear()

    def _on_transition(
        self, key: str, state: BreakerState, open_until: float | None, local: bool
    ) -> None:
        if not local or state is BreakerState.HALF_OPEN:
            return
        stamp = time.time()
        self._stamps[key] = stamp
        name = "open" if state is BreakerState.OPEN else "closed"
        message = f"{name} {stamp} {open_until or 0} {self.instance}"
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((key, message))

    async def _publish_forever(self) -> None:
        while True:
            key, message = await self._queue.get()
            try:
                # Two commands rather than one pipeline: a cluster client refuses PUBLISH in a
                # pipeline (and the hash and the channel live on different nodes anyway).
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    await self._redis.hset(REDIS_STATES, key, message)
                    await self._redis.publish(REDIS_CHANNEL, f"{key}\n{message}")
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("could not share a breaker transition (%s)", type(error).__name__)

    async def _subscribe_forever(self) -> None:
        def on_message(data: bytes | str) -> None:
            key, _, body = _text(data).partition("\n")
            self.apply(key, body)

        # Each (re)subscription reads the hash: transitions published meanwhile were missed.
        await follow_channel(
            self._redis, REDIS_CHANNEL, on_message, self.poll, lambda: self._closing
        )

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.poll()
            except (RedisError, OSError, TimeoutError) as error:
                log.debug("breaker poll failed (%s)", type(error).__name__)

    async def poll(self) -> None:
        """Apply the latest transition of every target recorded in Redis."""
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            entries: dict[Any, Any] = await self._redis.hgetall(REDIS_STATES)
        for key, body in entries.items():
            self.apply(_text(key), _text(body))

    def apply(self, key: str, body: str) -> None:
        """Apply one transition message (``state stamp open_until instance``) if it is news."""
        parts = body.split(" ")
        if len(parts) != 4 or parts[0] not in _STATES or parts[3] == self.instance:
            return
        try:
            stamp, open_until = float(parts[1]), float(parts[2])
        except ValueError:
            return
        if stamp <= self._stamps.get(key, 0.0):
            return
        self._stamps[key] = stamp
        state = _STATES[parts[0]]
        self._board.apply_remote(key, state, open_until if state is BreakerState.OPEN else None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
