"""Acceptance: four gateway processes share one Redis and enforce limits exactly together.

Real processes (``python -m xrouter serve``) on free ports, one SQLite database file and one key
pepper, a private ``redis-server`` (so stopping it leaves the shared test Redis alone), and a
GigaChat emulator that answers after a delay, so that every request of a burst has been admitted
before the first one settles.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.gateway_processes import (
    GatewayProcess,
    create_key,
    emulator_settings,
    environment,
    start_all,
    stop_all,
)
from tests.limits.redis_server import PrivateRedis
from tests.servers import BackgroundLoop
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.limits.policy import Limit, prompt_tokens
from xrouter.storage.migrate import upgrade

pytestmark = pytest.mark.redis

PROCESSES = 4
UPSTREAM_LATENCY_MS = 800
CHAT = "/v1/chat/completions"
PAYLOAD: dict[str, Any] = {
    "model": "gigachat/GigaChat-2",
    "messages": [{"role": "user", "content": "Сколько будет два плюс два?"}],
    "max_tokens": 200,
}


class Cluster:
    def __init__(self, database_url: str, redis_server: PrivateRedis, urls: list[str]) -> None:
        self.database_url = database_url
        self.redis = redis_server
        self.urls = urls

    def create_key(self, **limits: int) -> tuple[str, str]:
        """A new key (secret, id), once every process accepts it."""

        created = asyncio.run(create_key(self.database_url, "cluster", **limits))
        secret, key_id = created.key, created.info.id
        deadline = time.monotonic() + 10
        for url in self.urls:
            while httpx.get(f"{url}/v1/models", headers=auth(secret)).status_code != 200:
                assert time.monotonic() < deadline, "a gateway never picked up the key"
                time.sleep(0.05)
        return secret, key_id

    def burst(self, secret: str, count: int) -> list[httpx.Response]:
        """``count`` identical requests at once, spread evenly over the processes."""

        async def fire() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=count)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            f"{self.urls[index % len(self.urls)]}{CHAT}",
                            json=PAYLOAD,
                            headers=auth(secret),
                        )
                        for index in range(count)
                    )
                )

        return asyncio.run(fire())

    def metric(self, url: str, name: str, labels: str = "") -> float:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def slow_gigachat(loop: BackgroundLoop) -> Iterator[RunningEmulator]:
    options = EmulatorOptions(latency_ms=UPSTREAM_LATENCY_MS)
    emulator = loop.run(start_emulator("gigachat", options))
    yield emulator
    loop.run(emulator.close())


@pytest.fixture(scope="module")
def cluster(
    redis_url: str,  # skips the module where Redis tests are skipped
    slow_gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    redis_server = PrivateRedis(directory)
    redis_server.start()
    database_url = f"sqlite+aiosqlite:///{directory / 'xrouter.db'}"
    upgrade(database_url)
    env = environment(
        XROUTER_DATABASE_URL=database_url,
        XROUTER_REDIS_URL=redis_server.url,
        XROUTER_KEY_CACHE_REFRESH_SECONDS="0.1",
        **emulator_settings(slow_gigachat.url, emulators["yandex"].url),
        # Generous for a loaded CI machine: a timeout would switch to the local fallback.
        XROUTER_RATE_LIMIT_REDIS_TIMEOUT_MS="500",
        XROUTER_RATE_LIMIT_REDIS_RETRY_SECONDS="0.2",
        XROUTER_RATE_LIMIT_INSTANCES=str(PROCESSES),
    )
    processes: list[GatewayProcess] = []
    try:
        processes = start_all(PROCESSES, directory, env, ready_path="/health")
        yield Cluster(database_url, redis_server, [process.url for process in processes])
    finally:
        stop_all(processes)
        redis_server.stop()


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted


def test_requests_per_minute_are_exact_across_processes(cluster: Cluster) -> None:
    limit = 10
    secret, _ = cluster.create_key(rpm=limit)

    responses = cluster.burst(secret, 4 * limit)

    assert statuses(responses) == {200: limit, 429: 3 * limit}
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.json()["error"]["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 6


def test_tokens_per_minute_are_exact_across_processes_and_settle(cluster: Cluster) -> None:
    body = httpx.Request("POST", "/", json=PAYLOAD).content
    reserved = prompt_tokens(len(body)) + PAYLOAD["max_tokens"]
    limit = 10 * reserved
    secret, key_id = cluster.create_key(tpm=limit)

    started = time.monotonic()
    responses = cluster.burst(secret, 40)

    assert statuses(responses) == {200: 10, 429: 30}
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.json()["error"]["type"] == "tokens"
    # Every admitted request gave back what it reserved and did not use.
    used = sum(r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200)
    assert used < 10 * reserved
    time.sleep(0.3)
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        storage_key = Limit("key", key_id, "tpm", limit).storage_key
        theoretical_arrival = float(client.get(storage_key) or 0)
        seconds, microseconds = client.time()
    finally:
        client.close()
    interval = 60 / limit
    in_use = (theoretical_arrival - (seconds + microseconds / 1e6)) / interval
    refilled = (time.monotonic() - started) / interval
    assert used - refilled - 2 <= in_use <= used + 2


def test_no_double_burst_a_spent_limit_refills_one_request_at_a_time(cluster: Cluster) -> None:
    limit = 20  # one request back every 3 s
    secret, _ = cluster.create_key(rpm=limit)
    assert statuses(cluster.burst(secret, limit)) == {200: limit}
    refused = cluster.burst(secret, 8)
    assert statuses(refused) == {429: 8}
    wait = max(int(response.headers["retry-after-ms"]) for response in refused) / 1000
    assert wait <= 3.0

    time.sleep(wait + 0.05)

    # A fixed window that reset here would let a second burst of 20 through.
    assert statuses(cluster.burst(secret, 8)) == {200: 1, 429: 7}


def test_redis_outage_fails_open_and_exact_limits_resume(cluster: Cluster) -> None:
    secret, _ = cluster.create_key(rpm=100_000)
    seen: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            index = worker
            while not stop.is_set():
                url = cluster.urls[index % len(cluster.urls)]
                seen.append(
                    client.post(f"{url}{CHAT}", json=PAYLOAD, headers=auth(secret)).status_code
                )
                index += 1

    workers = [threading.Thread(target=load, args=(worker,)) for worker in range(8)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        cluster.redis.stop()
        time.sleep(2.0)
        degraded = [cluster.metric(url, "xrouter_ratelimit_degraded") for url in cluster.urls]
        errors = [
            cluster.metric(url, "xrouter_ratelimit_redis_errors_total", 'reason="connection"')
            for url in cluster.urls
        ]
        fallback = [
            cluster.metric(
                url, "xrouter_ratelimit_checks_total", 'backend="fallback",result="allowed"'
            )
            for url in cluster.urls
        ]
        cluster.redis.start()
        time.sleep(2.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)

    assert degraded == [1.0] * PROCESSES
    assert all(count >= 1 for count in errors)
    assert all(count >= 1 for count in fallback)
    assert seen
    assert set(seen) == {200}, statuses_of(seen)
    assert [cluster.metric(url, "xrouter_ratelimit_degraded") for url in cluster.urls] == [
        0.0
    ] * PROCESSES

    limit = 10
    exact, _ = cluster.create_key(rpm=limit)
    assert statuses(cluster.burst(exact, 4 * limit)) == {200: limit, 429: 3 * limit}


def statuses_of(seen: list[int]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for status in seen:
        counted[status] = counted.get(status, 0) + 1
    return counted
