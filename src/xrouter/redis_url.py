"""Redis clients from one URL: a single server, or the primary that Redis Sentinel names.

``redis://``, ``rediss://`` and ``unix://`` go to redis-py as they are. Sentinel URLs name the
sentinels and the service; every connection asks them for the current primary, so a failover
is followed without a restart:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]

(``rediss+sentinel://`` for TLS to the primary.) The user and password are the primary's; the
sentinels' own password, if they have one, is ``sentinel_password``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
PLAIN_SCHEMES = ("redis", "rediss", "unix")


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
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"a Sentinel URL starts with {' or '.join(SENTINEL_SCHEMES)}://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = [_host_port(item) for item in hosts.split(",") if item]
    if not sentinels:
        raise ValueError("a Sentinel URL names at least one sentinel as host:port")
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


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {item!r} is not host:port")
    return host.strip("[]"), int(port)


def validate_redis_url(url: str) -> str:
    """``url`` if it is a URL this module connects to; ``ValueError`` otherwise."""
    scheme = url.partition("://")[0]
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
        return url
    if "://" not in url or scheme not in PLAIN_SCHEMES:
        schemes = ", ".join(f"{name}://" for name in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES))
        raise ValueError(f"must start with one of {schemes}")
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


def connect_redis(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``; ``options`` (timeouts, retries) apply to the primary's
    connections and, for Sentinel, the socket timeouts to the sentinels' as well."""
    if url.partition("://")[0] not in SENTINEL_SCHEMES:
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
    primary_options = dict(options, db=address.db)
    if address.username is not None:
        primary_options["username"] = address.username
    if address.password is not None:
        primary_options["password"] = address.password
    if address.tls:
        primary_options["ssl"] = True
    client = sentinel.master_for(address.service, redis_class=SentinelRedis, **primary_options)
    assert isinstance(client, SentinelRedis)
    client.sentinel_manager = sentinel
    return client
