"""Redis stopped and restarted under load, for the whole gateway (limiter, key events, breaker
sync, token revocations all use it): every request is still answered 200 (the limiter fails
open by default), ``/ready`` reports Redis as degraded while it is gone, and everything
recovers once it is back. A private ``redis-server`` is used; the shared one is never stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.limits.redis_server import PrivateRedis
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.migrate import upgrade

CLIENTS = 4
BODY = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}
BOUND_SECONDS = 20


@pytest.fixture
def with_redis(
    loop: BackgroundLoop, emulators: dict[str, RunningEmulator], tmp_path: Path
) -> Iterator[tuple[RunningGateway, PrivateRedis]]:
    server = PrivateRedis(tmp_path)
    server.start()
    settings = gateway_settings(
        tmp_path / "xrouter.db",
        emulators["gigachat"].url,
        emulators["yandex"].url,
        redis_url=server.url,
        # A limit far above the load: every request is checked in Redis.
        rate_limit_key_rpm=1_000_000,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    try:
        yield running, server
    finally:
        running.stop()
        server.stop()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_redis_stopped_and_restarted_under_load(
    with_redis: tuple[RunningGateway, PrivateRedis],
) -> None:
    gateway, server = with_redis
    key = gateway.create_key("redis-outage").key
    headers = {"Authorization": f"Bearer {key}"}
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
            while not stop.is_set():
                statuses.append(http.post("/v1/chat/completions", json=BODY).status_code)

    clients = [threading.Thread(target=load) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    with httpx.Client(base_url=gateway.url, timeout=10) as probe:
        try:
            wait_for(lambda: len(statuses) >= 20, "no load before the outage")
            server.stop()
            before = len(statuses)
            wait_for(
                lambda: probe.get("/ready").json()["checks"]["redis"] != "ok",
                "/ready never noticed",
            )
            # Fail-open: the instance still serves, so it stays in the load balancer.
            ready = probe.get("/ready")
            assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
            wait_for(
                lambda: len(statuses) >= before + 20, "no requests served while Redis was down"
            )
            metrics = gateway.runtime.metrics
            wait_for(
                lambda: metrics.get_sample_value("xrouter_ratelimit_degraded") == 1,
                "the limiter never noticed",
            )
            server.start()
            during = len(statuses)
            wait_for(
                lambda: probe.get("/ready").json()["status"] == "ready", "/ready never recovered"
            )
            wait_for(lambda: len(statuses) >= during + 20, "no requests served after the restart")
            # Requests bring the limiter back to Redis (it retries every second).
            wait_for(
                lambda: metrics.get_sample_value("xrouter_ratelimit_degraded") == 0,
                "the limiter never left its degraded mode",
            )
        finally:
            stop.set()
            for client in clients:
                client.join(30)
    assert set(statuses) == {200}, sorted(set(statuses))
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=BODY).status_code == 200
