"""Following a Redis pub/sub channel for as long as a process runs.

Instances tell each other about changes (a revoked token, a disabled key) through a channel;
each also polls a source of truth as a safety net, because pub/sub drops messages while a
subscriber reconnects. ``follow_channel`` resubscribes after every failure and calls
``on_subscribed`` each time it is (re)subscribed, so the caller can catch up on what it missed.

On a Redis Cluster the channels are classic (not sharded) pub/sub: a ``PUBLISH`` on any node is
delivered to the subscribers of every node, so a subscriber may listen on any node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from xrouter.redis_url import RedisClient

logger = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 1.0
_READ_TIMEOUT_SECONDS = 0.5


async def subscriber(client: RedisClient) -> PubSub:
    """A pub/sub connection of ``client`` that skips subscription confirmations.

    On a cluster it goes to a node drawn at random from the ones the client knows, drawn again
    at every reconnection: redis-py's default (the node serving the channel's hash slot in the
    client's last view of the topology) would retry a failed node until something else made
    the client relearn the topology, while a random draw reaches a live node within a few
    attempts whatever the client's view. Replicas will do as well as primaries.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.pubsub(node=client.get_random_node(), ignore_subscribe_messages=True)
    return client.pubsub(ignore_subscribe_messages=True)


async def follow_channel(
    client: RedisClient,
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
        pubsub: PubSub | None = None
        try:
            pubsub = await subscriber(client)
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
            if pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
