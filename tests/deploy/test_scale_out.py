"""Acceptance: XRouter scales out as identical instances sharing one PostgreSQL and one Redis.

Three ``python -m xrouter serve`` processes on different ports, one PostgreSQL database (its
schema made afresh for each cluster) and a private ``redis-server``, behind a tiny round-robin
client. A key is created on one instance, used on another, limited on the third and revoked on
the first; each change reaches every instance within the second the README promises, and a
requests-per-minute limit admits exactly its number of requests however a burst is spread over
the instances. An instance killed with SIGKILL under load loses no usage record of a request it
answered: its usage journal is adopted by the instances that survive it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.gateway_processes import (
    GatewayProcess,
    create_key,
    environment,
    fresh_database,
    start_all,
    stop_all,
)
from tests.limits.redis_server import PrivateRedis
from tests.log_secrets import register_secret

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

INSTANCES = 3
# README, "Keys and usage": a revoked, disabled or changed key takes effect on every instance
# within a second.
PROPAGATION_SECONDS = 1.0
CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {
    "model": "gigachat/GigaChat-2-Max",
    "messages": [{"role": "user", "content": "Привет"}],
}


class RoundRobin:
    """The smallest load balancer: each request goes to the next instance in turn."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self._next = itertools.cycle(urls)
        self._lock = threading.Lock()

    def next_url(self) -> str:
        with self._lock:
            return next(self._next)

    def remove(self, url: str) -> None:
        """Stop sending to ``url`` (as a load balancer does once an instance fails)."""
        with self._lock:
            if url in self.urls:
                self.urls = [other for other in self.urls if other != url]
                self._next = itertools.cycle(self.urls)

    def burst(self, key: str, count: int) -> list[httpx.Response]:
        """``count`` chat requests sent at once, spread over the instances in turn."""

        async def fire() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=count)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                urls = [self.next_url() for _ in range(count)]
                return await asyncio.gather(
                    *(client.post(f"{url}{CHAT}", json=BODY, headers=bearer(key)) for url in urls)
                )

        return asyncio.run(fire())


@dataclass
class Cluster:
    gateways: list[GatewayProcess]
    balancer: RoundRobin
    database_url: str
    admin: str

    def api(self, instance: int) -> httpx.Client:
        """The management API of one instance, as an administrator."""
        return httpx.Client(
            base_url=self.gateways[instance].url, headers=bearer(self.admin), timeout=30
        )

    def usage_request_ids(self, key_id: str) -> list[str]:
        """The request id of every usage record of ``key_id`` (duplicates kept)."""

        async def query() -> list[str]:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.connect() as connection:
                    rows = await connection.execute(
                        text("SELECT request_id FROM usage_records WHERE key_id = :key"),
                        {"key": key_id},
                    )
                    return [str(row[0]) for row in rows]
            finally:
                await engine.dispose()

        return asyncio.run(query())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _admin_key(database_url: str) -> str:
    await fresh_database(database_url)
    return (await create_key(database_url, "operator", kind="management")).key


@contextmanager
def running_cluster(postgres_url: str, directory: Path, **settings: str) -> Iterator[Cluster]:
    """Three instances on one fresh database and one private Redis, stopped afterwards."""
    admin = asyncio.run(_admin_key(postgres_url))
    redis_server = PrivateRedis(directory)
    redis_server.start()
    env = environment(
        XROUTER_DATABASE_URL=postgres_url,
        XROUTER_REDIS_URL=redis_server.url,
        XROUTER_RATE_LIMIT_INSTANCES=str(INSTANCES),
        # Generous for a loaded machine: a timeout would switch to the per-instance fallback.
        XROUTER_RATE_LIMIT_REDIS_TIMEOUT_MS="500",
        **settings,
    )
    gateways: list[GatewayProcess] = []
    try:
        gateways = start_all(INSTANCES, directory, env)
        urls = [gateway.url for gateway in gateways]
        yield Cluster(gateways, RoundRobin(urls), postgres_url, admin)
    finally:
        stop_all(gateways)
        redis_server.stop()


@pytest.fixture(scope="class")
def cluster(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with running_cluster(postgres_url, tmp_path_factory.mktemp("scale-out")) as running:
        yield running


def chat(http: httpx.Client, url: str, key: str) -> httpx.Response:
    return http.post(f"{url}{CHAT}", json=BODY, headers=bearer(key))


def first_response(
    http: httpx.Client,
    url: str,
    key: str,
    accepted: Callable[[httpx.Response], object],
    since: float,
) -> httpx.Response:
    """Send requests to ``url`` until ``accepted(response)``: one sent later than the
    propagation time after ``since`` must be."""
    while True:
        sent = time.monotonic() - since
        response = chat(http, url, key)
        if accepted(response):
            return response
        assert sent < PROPAGATION_SECONDS, (url, sent, response.status_code, response.text)
        time.sleep(0.02)


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted


class TestThreeInstances:
    """Key changes and exact limits across the instances: one cluster for both (each test
    uses its own key), started once."""

    def test_a_key_created_used_limited_and_revoked_on_different_instances(
        self, cluster: Cluster
    ) -> None:
        first, second, third = cluster.balancer.urls
        limit = 8
        with cluster.api(0) as api, httpx.Client(timeout=30) as http:
            created = api.post("/api/keys", json={"name": "scale-out"})
            assert created.status_code == 201, created.text
            key, key_id = created.json()["key"], created.json()["id"]
            register_secret(key)
            # Created on the first instance, served by the second.
            first_response(http, second, key, lambda r: r.status_code == 200, time.monotonic())

            with cluster.api(2) as third_api:
                patched = third_api.patch(f"/api/keys/{key_id}", json={"rpm": limit})
            assert patched.status_code == 200, patched.text
            changed = time.monotonic()
            for url in (first, second, third):
                bound = first_response(
                    http, url, key, lambda r: r.headers.get("x-ratelimit-limit-requests"), changed
                )
                assert bound.status_code == 200
                assert bound.headers["x-ratelimit-limit-requests"] == str(limit)
            # One request per instance has been counted against the new limit; a burst spread over
            # all three gets exactly the rest (the limit refills one request per 7.5 s).
            assert statuses(cluster.balancer.burst(key, 3 * limit)) == {
                200: limit - INSTANCES,
                429: 2 * limit + INSTANCES,
            }

            revoked = api.delete(f"/api/keys/{key_id}")
            assert revoked.status_code == 200, revoked.text
            revoked_at = time.monotonic()
            for url in (first, second, third):
                refused = first_response(http, url, key, lambda r: r.status_code == 401, revoked_at)
                assert refused.json()["error"]["code"] == "invalid_api_key", refused.text

    def test_requests_per_minute_are_exact_over_the_instances(self, cluster: Cluster) -> None:
        limit = 10
        with cluster.api(1) as api:
            created = api.post("/api/keys", json={"name": "burst", "rpm": limit})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        register_secret(key)
        with httpx.Client(timeout=30) as http:
            for url in cluster.balancer.urls:  # every instance knows the key (without spending it)
                since = time.monotonic()
                while http.get(f"{url}/v1/models", headers=bearer(key)).status_code != 200:
                    assert time.monotonic() - since < PROPAGATION_SECONDS
                    time.sleep(0.02)

        responses = cluster.balancer.burst(key, 4 * limit)

        assert statuses(responses) == {200: limit, 429: 3 * limit}
        refused = next(response for response in responses if response.status_code == 429)
        assert refused.json()["error"]["type"] == "requests"


class Load:
    """Client threads sending chat requests round-robin, each with its own request id."""

    def __init__(self, balancer: RoundRobin, key: str, clients: int) -> None:
        self.balancer = balancer
        self.key = key
        self.answered: list[str] = []  # request ids of the 200 responses
        self.failed: list[str] = []  # request ids of requests that got no response
        self.refused: list[int] = []  # statuses other than 200 (there should be none)
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30, headers=bearer(self.key)) as http:
            while not self._stop.is_set():
                url = self.balancer.next_url()
                request_id = f"scale-{next(self._ids)}"
                try:
                    response = http.post(
                        f"{url}{CHAT}", json=BODY, headers={"x-request-id": request_id}
                    )
                except httpx.TransportError:
                    self.failed.append(request_id)
                    self.balancer.remove(url)
                    continue
                if response.status_code == 200:
                    self.answered.append(request_id)
                else:
                    self.refused.append(response.status_code)


def test_sigkill_under_load_loses_no_answered_usage(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    # A flush interval longer than the load: without the journal, the usage the killed
    # instance answered would still be in its memory.
    with running_cluster(
        postgres_url,
        tmp_path,
        XROUTER_USAGE_JOURNAL_DIR=str(journal),
        XROUTER_USAGE_FLUSH_SECONDS="5",
    ) as cluster:
        with cluster.api(0) as api:
            created = api.post("/api/keys", json={"name": "load"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        register_secret(key)
        with httpx.Client(timeout=30) as http:
            for url in cluster.balancer.urls:
                first_response(http, url, key, lambda r: r.status_code == 200, time.monotonic())
        victim = cluster.gateways[1]
        with Load(cluster.balancer, key, clients=6) as load:
            time.sleep(1.5)
            answered_before_kill = len(load.answered)
            victim.kill()
            time.sleep(1.0)
        assert answered_before_kill > 0
        assert load.refused == []
        assert victim.url not in cluster.balancer.urls
        answered = set(load.answered)
        deadline = time.monotonic() + 20
        while True:
            recorded = cluster.usage_request_ids(key_id)
            mine = [request_id for request_id in recorded if request_id.startswith("scale-")]
            if answered <= set(mine) or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    assert len(mine) == len(set(mine)), "a usage record was written twice"
    assert answered <= set(mine), f"{len(answered - set(mine))} answered requests lost"
    # A request the killed instance recorded but could not answer has a record and no response;
    # nothing else may.
    assert set(mine) - answered <= set(load.failed)
