"""Following a Redis pub/sub channel for as long as a process runs.

Instances tell each other about changes (a revoked token, a disabled key) through a channel;
each also polls a source of truth as a safety net, because pub/sub drops messages while a
subscriber reconnects. ``follow_channel`` resubscribes after every failure and calls
``on_subscribed`` each time it is (re)subscribed, so the caller can catch up on what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 1.0
_READ_TIMEOUT_SECONDS = 0.5


async def follow_channel(
    client: redis.Redis,
    channel: str,
    on_message: Callable[[bytes | str], None],
    on_subscribed: Callable[[], Awaitable[None]],
    closing: Callable[[], bool],
) -> None:
    """Deliver every message of ``channel`` to ``on_message`` until ``closing()`` is true.

    redis-py's ``get_message`` can swallow a task cancellation, so the loop also ends when
    ``closing()`` turns true; callers set their flag, then cancel the task.
    """
    while not closing():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            await on_subscribed()
            while not closing():
                message = await pubsub.get_message(timeout=_READ_TIMEOUT_SECONDS)
                if message is not None and message.get("type") == "message":
                    on_message(message["data"])
        except (RedisError, OSError, TimeoutError) as error:
            logger.warning("channel %s lost (%s); reconnecting", channel, type(error).__name__)
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
