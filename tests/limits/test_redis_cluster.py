"""Every use of Redis against a real Redis Cluster: three ``redis-server --cluster-enabled yes``
primaries on free loopback ports, joined by ``redis-cli --cluster create``, started once for
the module.

The rate limiter's scripts on the cluster (exact under concurrency, every key on one slot),
key-change and revocation messages and breaker transitions between two clients (and a
subscriber outliving its node), the spend and sign-in counters spread over the slots,
readiness and pool figures, and a whole gateway configured with ``redis+cluster://``
enforcing a limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway_fixtures import gateway_settings
from tests.gateway_processes import free_port
from tests.limits.redis_server import PrivateRedisCluster
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.auth.rate_limit import LoginRateLimiter
from xrouter.auth.revocation import Denylist, RevocationFeed
from xrouter.emulators.server import RunningEmulator
from xrouter.keys.events import KeyEvents
from xrouter.limits.backend import BackendUnavailableError
from xrouter.limits.policy import Limit
from xrouter.limits.redis_backend import RedisBackend, limiter_client
from xrouter.observability.metrics import redis_pool_reader
from xrouter.pubsub import follow_channel
from xrouter.redis_url import (
    ClusterRedis,
    RedisClient,
    connect_redis,
    needs_topology,
    ping_redis,
)
from xrouter.routing.breaker import BreakerBoard, BreakerPolicy, BreakerState
from xrouter.routing.breaker_sync import BreakerSync
from xrouter.storage.migrate import upgrade
from xrouter.usage.periods import Calendar
from xrouter.usage.spend import MonthlySpend

pytestmark = pytest.mark.redis

CHAT = "/v1/chat/completions"
BODY = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    running = PrivateRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def clients(cluster: PrivateRedisCluster) -> AsyncIterator[list[RedisClient]]:
    """Two clients, as two gateway instances would have."""
    made = [connect_redis(cluster.url, socket_timeout=2, socket_connect_timeout=2) for _ in "ab"]
    yield made
    for client in made:
        await client.aclose()


async def until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def slots_served(cluster: PrivateRedisCluster) -> dict[int, int]:
    """Port of each node -> how many hash slots it serves (all three serve some)."""
    with redis.Redis(port=cluster.nodes[0].port, socket_timeout=2) as client:
        shards = client.execute_command("CLUSTER", "SLOTS")
    served: dict[int, int] = {}
    for start, end, primary, *_ in shards:
        served[int(primary[1])] = served.get(int(primary[1]), 0) + end - start + 1
    return served


def primary_of(cluster: PrivateRedisCluster, slot: int) -> int:
    """Port of the primary serving ``slot``."""
    with redis.Redis(port=cluster.nodes[0].port, socket_timeout=2) as client:
        shards = client.execute_command("CLUSTER", "SLOTS")
    return next(int(primary[1]) for start, end, primary, *_ in shards if start <= slot <= end)


def fresh_limits() -> list[Limit]:
    """The limits of one request: its key, its user, its model."""
    subject = uuid.uuid4().hex
    return [
        Limit("key", f"key-{subject}", "rpm", 25),
        Limit("user", f"user-{subject}", "tpm", 10_000),
        Limit("model", f"gigachat/{subject}", "tpd", 1_000_000),
    ]


def test_the_cluster_spreads_slots_over_three_primaries(cluster: PrivateRedisCluster) -> None:
    served = slots_served(cluster)
    assert sorted(served) == sorted(node.port for node in cluster.nodes)
    assert sum(served.values()) == 16384


async def test_a_cluster_url_gives_a_cluster_client(clients: list[RedisClient]) -> None:
    client = clients[0]
    assert isinstance(client, ClusterRedis)
    # Keys on different slots: the client sends each to the node that serves it.
    names = [f"xrouter:test:{index}" for index in range(20)]
    assert len({key_slot(name.encode()) for name in names}) > 1
    for index, name in enumerate(names):
        await client.set(name, index, ex=60)
    assert [int(await client.get(name)) for name in names] == list(range(20))
    await ping_redis(client)
    assert len(client.get_nodes()) == 3


async def test_commands_issued_together_on_a_fresh_client_all_succeed(
    cluster: PrivateRedisCluster,
) -> None:
    # As at a gateway's start: before the client knows the topology, many commands at once.
    for _ in range(5):
        client = connect_redis(cluster.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            names = [f"xrouter:test:{uuid.uuid4().hex}" for _ in range(30)]
            assert await asyncio.gather(*(client.get(name) for name in names)) == [None] * 30
        finally:
            await client.aclose()


async def test_an_unreachable_cluster_is_a_redis_connection_error() -> None:
    client = connect_redis(
        f"redis+cluster://127.0.0.1:{free_port()}", socket_timeout=1, socket_connect_timeout=1
    )
    try:
        # Not redis-py's RedisClusterException, which is no RedisError: every user of Redis
        # treats a RedisError as "Redis is unavailable" and carries on.
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.get("xrouter:test")
        with pytest.raises(redis.exceptions.ConnectionError):
            await ping_redis(client)
    finally:
        await client.aclose()


async def test_the_limiter_is_exact_on_the_cluster(cluster: PrivateRedisCluster) -> None:
    limits = fresh_limits()
    # Every key of a request on one slot: the script touches them all at once.
    assert len({key_slot(limit.storage_key.encode()) for limit in limits}) == 1
    # One frozen clock for all four: nothing refills between the reads compared below, however
    # long a loaded machine takes between them.
    now = time.time()
    backends = [RedisBackend(limiter_client(cluster.url), 2.0, clock=lambda: now) for _ in range(4)]
    try:
        decisions = await asyncio.gather(
            *(backends[index % 4].acquire(limits, [1, 50, 50]) for index in range(100))
        )
        assert sum(decision.allowed for decision in decisions) == 25
        refused = next(decision for decision in decisions if not decision.allowed)
        assert refused.states[0].remaining == 0
        assert refused.states[0].retry_after > 0
        # Settling gives back what a request did not use: the user's tokens, here.
        before = (await backends[0].acquire(limits[1:], [0, 0])).states[0].remaining
        await backends[1].adjust(limits, [0, -1000, 0])
        after = (await backends[2].acquire(limits[1:], [0, 0])).states[0].remaining
        assert after - before == 1000
    finally:
        for backend in backends:
            await backend.close()


async def test_the_limiter_learns_the_topology_outside_a_calls_budget(
    cluster: PrivateRedisCluster,
) -> None:
    # A budget far below what loading the topology takes: the first call fails as with a
    # slow Redis, and the load completes regardless, for the calls that follow.
    client = limiter_client(cluster.url)
    backend = RedisBackend(client, 0.000_001)
    limits = fresh_limits()
    try:
        with pytest.raises(BackendUnavailableError, match="timeout"):
            await backend.acquire(limits, [1, 1, 1])
        await until(lambda: not needs_topology(client), "the topology never loaded")
        backend._timeout = 2.0
        assert (await backend.acquire(limits, [1, 1, 1])).allowed
    finally:
        await backend.close()


async def test_limiter_keys_stay_on_one_node(
    cluster: PrivateRedisCluster, clients: list[RedisClient]
) -> None:
    backend = RedisBackend(limiter_client(cluster.url), 2.0)
    try:
        for _ in range(5):
            assert (await backend.acquire(fresh_limits(), [1, 10, 10])).allowed
    finally:
        await backend.close()
    slot = key_slot(b"{xrouter-rl}")
    counts = []
    for node in cluster.nodes:
        with redis.Redis(port=node.port, socket_timeout=2) as plain:
            counts.append(len(plain.keys("xrouter:rl:*")))
            if counts[-1]:
                assert plain.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 15
    assert sorted(counts)[:2] == [0, 0]
    assert max(counts) >= 15


async def test_channel_messages_reach_the_other_client(clients: list[RedisClient]) -> None:
    heard: list[bytes | str] = []
    subscribed = asyncio.Event()
    closing = False

    async def on_subscribed() -> None:
        subscribed.set()

    channel = f"xrouter:test:{uuid.uuid4().hex}"
    task = asyncio.create_task(
        follow_channel(clients[1], channel, heard.append, on_subscribed, lambda: closing)
    )
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        # Published through whichever node serves the channel's slot; heard on whichever node
        # the subscriber listens to.
        for index in range(5):
            await clients[0].publish(channel, f"message {index}")
        await until(lambda: len(heard) == 5, "the messages never arrived")
        assert heard == [f"message {index}".encode() for index in range(5)]
    finally:
        closing = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_subscriber_whose_node_stops_listens_on_another(tmp_path: Path) -> None:
    # The other nodes keep serving their slots while one is down.
    cluster = PrivateRedisCluster(tmp_path, options=("--cluster-require-full-coverage", "no"))
    cluster.start()
    client = connect_redis(cluster.url, socket_timeout=2, socket_connect_timeout=2)
    channel = f"xrouter:test:{uuid.uuid4().hex}"
    heard: list[bytes | str] = []
    closing = False

    async def nothing() -> None:
        pass

    stopped: set[int] = set()

    def listening_node() -> int | None:
        for node in cluster.nodes:
            if node.port in stopped:
                continue
            with redis.Redis(port=node.port, socket_timeout=1) as plain:
                if plain.pubsub_numsub(channel)[0][1]:
                    return node.port
        return None

    task = asyncio.create_task(
        follow_channel(client, channel, heard.append, nothing, lambda: closing)
    )
    try:
        await until(lambda: listening_node() is not None, "never subscribed")
        first = listening_node()
        assert first is not None
        next(node for node in cluster.nodes if node.port == first).stop()
        stopped.add(first)
        # Nothing here makes the client relearn the topology: the subscriber leaves the
        # stopped node behind by drawing another one when it reconnects.
        await until(lambda: listening_node() is not None, "never resubscribed", 10)
        survivor = next(node for node in cluster.nodes if node.port != first)
        with redis.Redis(port=survivor.port, socket_timeout=1) as plain:
            plain.publish(channel, "after the failure")
        await until(lambda: heard == [b"after the failure"], "the message never arrived")
    finally:
        closing = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        cluster.stop()


class RecordingCache:
    """Stands in for a ``KeyCache``: counts the refreshes a key event asks for."""

    def __init__(self) -> None:
        self.refreshes = 0

    def refresh_soon(self) -> None:
        self.refreshes += 1


async def test_key_changes_reach_the_other_instance(clients: list[RedisClient]) -> None:
    cache = RecordingCache()
    follower = KeyEvents(clients[1], cache)  # type: ignore[arg-type]
    await follower.start()
    try:
        await until(lambda: cache.refreshes >= 1, "never subscribed")  # the catch-up refresh
        before = cache.refreshes
        await KeyEvents(clients[0]).announce("key_changed")
        await until(lambda: cache.refreshes > before, "the key change never arrived")
    finally:
        await follower.close()


async def test_revocations_reach_the_other_instance(
    sessions: async_sessionmaker[AsyncSession], clients: list[RedisClient]
) -> None:
    feeds = [RevocationFeed(sessions, Denylist(), client, poll_seconds=30) for client in clients]
    for feed in feeds:
        await feed.start()
    try:
        jti = f"at_{uuid.uuid4().hex}"
        await feeds[0].announce([(jti, time.time() + 60)])
        await until(lambda: jti in feeds[1].denylist, "the revocation never arrived")
        # A late starter reads the denylist the cluster keeps (both keys on one slot).
        late = RevocationFeed(sessions, Denylist(), clients[1], poll_seconds=30)
        await late.start()
        try:
            assert jti in late.denylist
        finally:
            await late.close()
    finally:
        for feed in feeds:
            await feed.close()


async def test_breaker_transitions_reach_the_other_instance(clients: list[RedisClient]) -> None:
    policy = BreakerPolicy(min_requests=2, failure_ratio=0.5, open_seconds=30)
    target = f"gigachat/{uuid.uuid4().hex}"
    first, second = BreakerBoard(policy), BreakerBoard(policy)
    syncs = [BreakerSync(first, clients[0], 30), BreakerSync(second, clients[1], 30)]
    for sync in syncs:
        await sync.start()
    try:
        await asyncio.sleep(0.3)  # both subscribed
        first.record(target, False)
        first.record(target, False)
        assert first.state(target) is BreakerState.OPEN
        await until(lambda: second.state(target) is BreakerState.OPEN, "never opened")
        # A late instance reads the latest state from the hash.
        late = BreakerBoard(policy)
        await BreakerSync(late, clients[1], 30).poll()
        assert late.state(target) is BreakerState.OPEN
    finally:
        for sync in syncs:
            await sync.close()


async def test_spend_counters_spread_over_the_slots(
    sessions: async_sessionmaker[AsyncSession], clients: list[RedisClient]
) -> None:
    keys = [f"key_{uuid.uuid4().hex}" for _ in range(8)]
    spends = [
        MonthlySpend(
            sessions, Calendar(3), redis_client=client, sync_seconds=0.05, watched_keys=lambda: keys
        )
        for client in clients
    ]
    for spend in spends:
        await spend.start()
    try:
        for index, key in enumerate(keys):
            spends[0].add(key, index + 1.5)
        await until(
            lambda: all(spends[1].spent(key) == index + 1.5 for index, key in enumerate(keys)),
            "the other instance never saw the spending",
        )
    finally:
        for spend in spends:
            await spend.close()


async def test_failed_sign_ins_are_counted_across_instances(
    clients: list[RedisClient],
) -> None:
    limiters = [
        LoginRateLimiter(per_account=3, per_ip=100, window_seconds=60, redis_client=client)
        for client in clients
    ]
    account = f"{uuid.uuid4().hex}@example.com"
    for index in range(3):
        assert await limiters[index % 2].retry_after(account, "192.0.2.1") is None
        await limiters[index % 2].failed(account, "192.0.2.1")
    wait = await limiters[1].retry_after(account, "192.0.2.2")
    assert wait is not None
    assert 0 < wait <= 60
    await limiters[0].succeeded(account)
    assert await limiters[1].retry_after(account, "192.0.2.2") is None


async def test_pool_figures_add_up_over_the_nodes(clients: list[RedisClient]) -> None:
    client = clients[0]
    read = redis_pool_reader(client)
    await asyncio.gather(*(client.get(f"xrouter:test:{index}") for index in range(30)))
    figures = read()
    assert figures["xrouter_redis_pool_in_use"] == 0
    assert figures["xrouter_redis_pool_idle"] >= 3  # at least one connection per node
    assert isinstance(client, RedisCluster)
    async with client.pubsub(node=client.get_random_node()) as pubsub:
        await pubsub.subscribe("xrouter:test:pool")
        assert read()["xrouter_redis_pool_in_use"] == 1


@pytest.fixture
def cluster_gateway(
    cluster: PrivateRedisCluster,
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path: Path,
) -> Iterator[RunningGateway]:
    settings = gateway_settings(
        tmp_path / "xrouter.db",
        emulators["gigachat"].url,
        emulators["yandex"].url,
        redis_url=cluster.url,
        rate_limit_key_rpm=3,
        # Refused rather than decided in memory if the cluster could not answer: every
        # decision below is the cluster's.
        rate_limit_failure_policy="closed",
        # The production budget (5 ms) is for a dedicated Redis; here the cluster's nodes share
        # two cores with the whole suite.
        rate_limit_redis_timeout_ms=500,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    try:
        yield running
    finally:
        running.stop()


def test_a_gateway_on_the_cluster_serves_and_limits(
    cluster_gateway: RunningGateway, cluster: PrivateRedisCluster
) -> None:
    gateway = cluster_gateway
    assert isinstance(gateway.runtime.redis, ClusterRedis)
    key = gateway.create_key("on-the-cluster")
    headers = {"Authorization": f"Bearer {key.key}"}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"] == "ok"
        statuses = [http.post(CHAT, json=BODY, headers=headers).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        metrics = http.get("/metrics").text
    assert "xrouter_ratelimit_degraded 0.0" in metrics
    assert "xrouter_redis_pool_idle" in metrics
    # The key's limit lives in the cluster, on the limiter's slot.
    stored = f"xrouter:rl:{{xrouter-rl}}:key:{key.info.id}:rpm"
    with redis.Redis(
        port=primary_of(cluster, key_slot(stored.encode())), socket_timeout=2
    ) as plain:
        assert plain.pttl(stored) > 0
