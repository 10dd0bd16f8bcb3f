"""Redis clients from one URL: a single server, the primary that Redis Sentinel names, or a
Redis Cluster.

``redis://``, ``rediss://`` and ``unix://`` go to redis-py as they are. Sentinel URLs name the
sentinels and the service; every connection asks them for the current primary, so a failover
is followed without a restart:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]

(``rediss+sentinel://`` for TLS to the primary.) The user and password are the primary's; the
sentinels' own password, if they have one, is ``sentinel_password``.

Cluster URLs name one or more startup nodes; the client learns the rest of the cluster, and
which node serves which hash slot, from them (and again after a failover or a resharding):

    redis+cluster://[[user]:password@]host:port[,host:port...][/]

(``rediss+cluster://`` for TLS.) A cluster has only database 0, so the URL has no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
PLAIN_SCHEMES = ("redis", "rediss", "unix")

# What ``connect_redis`` returns: every user of Redis in XRouter works with either.
RedisClient = redis.Redis | RedisCluster


@dataclass(frozen=True)
class ClusterAddress:
    """What a Cluster URL says."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


@dataclass(frozen=True)
class SentinelAddress:
    """What a Sentinel URL says."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Parse a ``redis+sentinel://`` URL; ``ValueError`` names what is wrong."""
    scheme, netloc, path, query = _split(url, SENTINEL_SCHEMES, "Sentinel")
    username, password, hosts = _credentials(netloc)
    sentinels = _addresses(hosts, "sentinel", "a Sentinel URL names at least one sentinel")
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL's path is /service or /service/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"database {parts[1]!r} is not a number")
        db = int(parts[1])
    options = parse_qs(query)
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown Sentinel URL option(s): {', '.join(sorted(unknown))}")
    sentinel_password = options.get("sentinel_password", [None])[-1]
    return SentinelAddress(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=scheme == "rediss+sentinel",
    )


def parse_cluster_url(url: str) -> ClusterAddress:
    """Parse a ``redis+cluster://`` URL; ``ValueError`` names what is wrong."""
    scheme, netloc, path, query = _split(url, CLUSTER_SCHEMES, "Cluster")
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: a Cluster URL has no path")
    if query:
        raise ValueError(f"unknown Cluster URL option(s): {query}")
    username, password, hosts = _credentials(netloc)
    nodes = _addresses(hosts, "cluster node", "a Cluster URL names at least one node")
    return ClusterAddress(
        nodes=nodes, username=username, password=password, tls=scheme == "rediss+cluster"
    )


def _split(url: str, schemes: tuple[str, ...], kind: str) -> tuple[str, str, str, str]:
    """``(scheme, netloc, path, query)`` of a ``kind`` URL, whose scheme is one of ``schemes``."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in schemes:
        raise ValueError(f"a {kind} URL starts with {' or '.join(schemes)}://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    return scheme, netloc, path, query


def _addresses(hosts: str, what: str, at_least_one: str) -> list[tuple[str, int]]:
    """The ``host:port`` items of the comma-separated ``hosts``, of which there is one at least
    (``at_least_one`` says so otherwise)."""
    addresses = [_host_port(item, what) for item in hosts.split(",") if item]
    if not addresses:
        raise ValueError(f"{at_least_one} as host:port")
    return addresses


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    """``(user, password, hosts)`` of ``[[user]:password@]hosts``."""
    credentials, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, hosts


def _host_port(item: str, what: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {item!r} is not host:port")
    return host.strip("[]"), int(port)


def validate_redis_url(url: str) -> str:
    """``url`` if it is a URL this module connects to; ``ValueError`` otherwise."""
    scheme = url.partition("://")[0]
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
        return url
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)
        return url
    if "://" not in url or scheme not in PLAIN_SCHEMES:
        every = (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)
        raise ValueError(f"must start with one of {', '.join(f'{name}://' for name in every)}")
    return url


class SentinelRedis(redis.Redis):
    """A client of the Sentinel-named primary that also closes its connections to the
    sentinels when it is closed (redis-py leaves those to the caller)."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.sentinel_manager is not None:
                await self.sentinel_manager.aclose()


def connect_redis(url: str, **options: Any) -> RedisClient:
    """A client for ``url``; ``options`` (timeouts, retries) apply to the primary's
    connections, for Sentinel the socket timeouts to the sentinels' as well, and for a
    cluster to every node's connections (``retry`` then counts the cluster client's attempts,
    each of which may go to another node after relearning the topology)."""
    scheme = url.partition("://")[0]
    if scheme in CLUSTER_SCHEMES:
        return _connect_cluster(parse_cluster_url(url), options)
    if scheme not in SENTINEL_SCHEMES:
        client: redis.Redis = redis.from_url(url, **options)
        return client
    address = parse_sentinel_url(url)
    sentinel_options: dict[str, Any] = {
        name: value for name, value in options.items() if name.startswith("socket_")
    }
    # A sentinel that does not answer is skipped at once for the next one: retrying it (with
    # redis-py's default backoff) would delay every new connection by seconds.
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    if address.sentinel_password is not None:
        sentinel_options["password"] = address.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        address.sentinels, sentinel_kwargs=sentinel_options
    )
    primary_options = _with_credentials(dict(options, db=address.db), address)
    client = sentinel.master_for(address.service, redis_class=SentinelRedis, **primary_options)
    assert isinstance(client, SentinelRedis)
    client.sentinel_manager = sentinel
    return client


def _with_credentials(
    options: dict[str, Any], address: SentinelAddress | ClusterAddress
) -> dict[str, Any]:
    """A copy of ``options`` with the user, password and TLS that the URL gave, if it did."""
    options = dict(options)
    if address.username is not None:
        options["username"] = address.username
    if address.password is not None:
        options["password"] = address.password
    if address.tls:
        options["ssl"] = True
    return options


def _connect_cluster(address: ClusterAddress, options: dict[str, Any]) -> RedisCluster:
    cluster_options = _with_credentials(options, address)
    nodes = [ClusterNode(host, port) for host, port in address.nodes]
    return ClusterRedis(startup_nodes=nodes, **cluster_options)


class ClusterRedis(RedisCluster):
    """A cluster client that knows the topology before it sends a command, and whose "no node
    answers" is a ``redis.exceptions.ConnectionError``.

    redis-py reports an unreachable cluster (no startup node answers, or the slots are not all
    covered during a failover) with ``RedisClusterException``, which is not a ``RedisError``:
    every user of Redis here treats ``RedisError`` as "Redis is unavailable" and carries on
    without it, so the cluster client says the same thing in the same words.
    """

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        try:
            return await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as error:
            raise RedisConnectionError(f"Redis Cluster unreachable: {error}") from error

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._initialize:
                # redis-py picks a command's node before it loads the topology: commands
                # issued together on a fresh client went to random nodes, drew MOVED replies
                # and made the client close every connection, those of the others included.
                await self.initialize()
            return await super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as error:
            raise RedisConnectionError(f"Redis Cluster slot not served: {error}") from error


def needs_topology(client: RedisClient) -> bool:
    """Whether ``client`` is a cluster client that has yet to (re)learn which node serves
    which slot: it does on its first command and again after a node failed to answer.

    redis-py keeps this in a private flag; reading it lets callers with a budget of a few
    milliseconds run the (slower) topology load on their own terms instead of inside a
    command they would cancel.
    """
    return isinstance(client, RedisCluster) and bool(client._initialize)


async def ping_redis(client: RedisClient) -> None:
    """Raise unless Redis answers: a single server, or every primary of a cluster (a cluster
    missing a primary refuses the commands of that primary's slots)."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()
