"""Redis clients from URLs, Sentinel included: against a real redis-server and a real
Sentinel (redis-server in sentinel mode) on free loopback ports."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from tests.gateway_processes import free_port
from tests.limits.redis_server import PrivateRedis
from xrouter.limits.redis_backend import limiter_client
from xrouter.redis_url import (
    ClusterRedis,
    SentinelRedis,
    connect_redis,
    parse_cluster_url,
    parse_sentinel_url,
    validate_redis_url,
)
from xrouter.settings import ConfigurationError, load_settings

SERVICE = "xrouter-primary"


class PrivateSentinel:
    """A Sentinel watching one primary under ``SERVICE``."""

    def __init__(self, directory: Path, primary_port: int) -> None:
        self.port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        self._process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE):
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("sentinel did not start")
                time.sleep(0.02)
        finally:
            client.close()

    def _command(self, *args: str) -> object:
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def replicas(self) -> object:
        return self._command("SENTINEL", "replicas", SERVICE)

    def failover(self) -> None:
        self._command("SENTINEL", "failover", SERVICE)

    def primary_port(self) -> int:
        address = self._command("SENTINEL", "get-master-addr-by-name", SERVICE)
        assert isinstance(address, list)
        return int(address[1])

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(10)


@pytest.fixture
def sentinel_url(tmp_path: Path) -> Iterator[str]:
    primary = PrivateRedis(tmp_path)
    primary.start()
    sentinel = PrivateSentinel(tmp_path, primary.port)
    try:
        # A sentinel that does not answer comes first: the client moves on to the next one.
        yield f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{sentinel.port}/{SERVICE}/2"
    finally:
        sentinel.stop()
        primary.stop()


def test_parses_sentinels_service_database_and_credentials() -> None:
    address = parse_sentinel_url(
        "rediss+sentinel://app:p%40ss@s1:26379,[::1]:26380/main/3?sentinel_password=sp"
    )
    assert address.sentinels == [("s1", 26379), ("::1", 26380)]
    assert address.service == "main"
    assert address.db == 3
    assert (address.username, address.password) == ("app", "p@ss")
    assert address.sentinel_password == "sp"
    assert address.tls
    assert "p@ss" not in repr(address)
    plain = parse_sentinel_url("redis+sentinel://s1:26379/main")
    assert (plain.db, plain.password, plain.tls) == (0, None, False)


def test_parses_cluster_nodes_and_credentials() -> None:
    address = parse_cluster_url("rediss+cluster://app:p%40ss@n1:7000,[::1]:7001,n3:7002/")
    assert address.nodes == [("n1", 7000), ("::1", 7001), ("n3", 7002)]
    assert (address.username, address.password) == ("app", "p@ss")
    assert address.tls
    assert "p@ss" not in repr(address)
    plain = parse_cluster_url("redis+cluster://:secret@n1:7000")
    assert (plain.nodes, plain.username, plain.password, plain.tls) == (
        [("n1", 7000)],
        None,
        "secret",
        False,
    )
    assert parse_cluster_url("redis+cluster://n1:7000/0").nodes == [("n1", 7000)]


def test_a_cluster_url_builds_a_cluster_client_with_its_startup_nodes() -> None:
    client = connect_redis(
        "redis+cluster://app:secret@127.0.0.1:7000,127.0.0.1:7001", socket_timeout=0.5
    )
    assert isinstance(client, ClusterRedis)
    assert [node.name for node in client.startup_nodes] == ["127.0.0.1:7000", "127.0.0.1:7001"]
    options = client.connection_kwargs
    assert (options["username"], options["password"]) == ("app", "secret")
    assert options["socket_timeout"] == 0.5
    tls = connect_redis("rediss+cluster://127.0.0.1:7000")
    assert tls.connection_kwargs["connection_class"].__name__ == "SSLConnection"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://n1:7000/2", "only database 0"),
        ("redis+cluster://n1:7000?read_from_replicas=yes", "unknown Cluster URL option"),
        ("redis+cluster://", "at least one node"),
        ("redis+cluster://n1", "cluster node 'n1' is not host:port"),
        ("redis+cluster://n1:7000,n2:99999", "is not host:port"),
        ("redis+sentinel://s1:26379", "path is /service"),
        ("redis+sentinel://s1:26379/main/x", "not a number"),
        ("redis+sentinel:///main", "at least one sentinel"),
        ("redis+sentinel://s1/main", "not host:port"),
        ("redis+sentinel://s1:26379/main?timeout=1", "unknown Sentinel URL option"),
        ("http://redis:6379", "must start with one of"),
        ("redis-host:6379", "must start with one of"),
    ],
)
def test_refuses_malformed_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_redis_url(url)


def test_settings_accept_sentinel_urls_and_name_bad_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XROUTER_REDIS_URL", "redis+sentinel://s1:26379,s2:26379/main")
    assert load_settings().redis_url == "redis+sentinel://s1:26379,s2:26379/main"
    monkeypatch.setenv("XROUTER_REDIS_URL", "redis+sentinel://s1:26379")
    with pytest.raises(ConfigurationError, match=r"XROUTER_REDIS_URL: a Sentinel URL's path"):
        load_settings()


def test_settings_accept_cluster_urls_and_name_bad_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XROUTER_REDIS_URL", "redis+cluster://n1:7000,n2:7000")
    assert load_settings().redis_url == "redis+cluster://n1:7000,n2:7000"
    monkeypatch.setenv("XROUTER_REDIS_URL", "redis+cluster://n1:7000/3")
    with pytest.raises(ConfigurationError, match=r"XROUTER_REDIS_URL: a Redis Cluster has only"):
        load_settings()


@pytest.mark.redis
async def test_plain_urls_are_redis_py_clients(redis_url: str) -> None:
    client = connect_redis(redis_url, socket_timeout=1)
    try:
        assert not isinstance(client, SentinelRedis)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_sentinel_url_reaches_the_primary_it_names(sentinel_url: str) -> None:
    client = connect_redis(sentinel_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        assert isinstance(client, SentinelRedis)
        await client.set("xrouter:test", "through-sentinel")
        assert await client.get("xrouter:test") == b"through-sentinel"
        assert (await client.client_info())["db"] == 2
        # Pub/sub (key invalidation, revocations, breakers) works through it too.
        async with client.pubsub() as pubsub:
            await pubsub.subscribe("xrouter:test-channel")
            await pubsub.get_message(timeout=1)  # the subscription confirmation
            assert await client.publish("xrouter:test-channel", "hello") == 1
            message = None
            for _ in range(20):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message:
                    break
            assert message is not None
            assert message["data"] == b"hello"
    finally:
        await client.aclose()


async def test_the_rate_limiter_client_follows_sentinel(sentinel_url: str) -> None:
    client = limiter_client(sentinel_url)
    try:
        assert isinstance(client, SentinelRedis)
        assert await asyncio.wait_for(client.ping(), 5)
    finally:
        await client.aclose()


async def test_a_failover_is_followed_without_a_new_client(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = PrivateRedis(tmp_path / "first")
    second = PrivateRedis(tmp_path / "second")
    first.start()
    second.start()
    replica = redis.Redis(port=second.port, socket_timeout=1)
    replica.replicaof("127.0.0.1", first.port)
    deadline = time.monotonic() + 30
    while replica.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        await asyncio.sleep(0.05)
    # Started after the replica synced, Sentinel sees it in its first look at the primary.
    sentinel = PrivateSentinel(tmp_path, first.port)
    client = connect_redis(
        f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}",
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    try:
        await client.set("xrouter:before", "1")
        while not sentinel.replicas():
            assert time.monotonic() < deadline, "sentinel did not discover the replica"
            await asyncio.sleep(0.1)
        while True:
            try:
                sentinel.failover()
                break
            except redis.exceptions.ResponseError as error:
                # Until Sentinel has looked at the replica itself, it has no "good" one.
                if "NOGOODSLAVE" not in str(error):
                    raise
                assert time.monotonic() < deadline, "sentinel found no replica to promote"
                await asyncio.sleep(0.1)
        while sentinel.primary_port() != second.port:
            assert time.monotonic() < deadline, "sentinel did not promote the replica"
            await asyncio.sleep(0.1)
        old_primary = redis.Redis(port=first.port, socket_timeout=1)
        try:
            while old_primary.info("replication")["role"] != "slave":
                assert time.monotonic() < deadline, "the old primary was not demoted"
                await asyncio.sleep(0.1)
        finally:
            old_primary.close()
        written = False
        while not written:
            try:
                await client.set("xrouter:after", "2")
                written = True
            except redis.exceptions.ConnectionError:
                # The old primary refused the write (now read-only); the next attempt asks
                # Sentinel again and reaches the new one.
                assert time.monotonic() < deadline, "the client did not follow the failover"
                await asyncio.sleep(0.1)
        assert replica.get("xrouter:after") == b"2"
        assert replica.get("xrouter:before") == b"1"
    finally:
        await client.aclose()
        replica.close()
        sentinel.stop()
        second.stop()
        first.stop()
