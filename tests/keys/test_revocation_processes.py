"""Two real ``xrouter serve`` processes sharing PostgreSQL and Redis: a key revoked or disabled
through one is refused by the other within a second. The key caches poll the database only every
30 s here, so what arrives in time came through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_processes import (
    GatewayProcess,
    create_key,
    environment,
    fresh_database,
    start_all,
    stop_all,
)
from tests.log_secrets import register_secret

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _prepare(database_url: str) -> str:
    await fresh_database(database_url)
    return (await create_key(database_url, "ops", kind="management")).key


@pytest.fixture
def two_gateways(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess, str]]:
    manager = asyncio.run(_prepare(postgres_url))
    env = environment(
        XROUTER_DATABASE_URL=postgres_url,
        XROUTER_REDIS_URL=redis_url,
        XROUTER_KEY_CACHE_REFRESH_SECONDS="30",
    )
    processes: list[GatewayProcess] = []
    try:
        processes = start_all(2, tmp_path, env)
        yield processes[0], processes[1], manager
    finally:
        stop_all(processes)


def _refused_within(http: httpx.Client, url: str, key: str, status: int) -> float:
    started = time.monotonic()
    body = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}
    while True:
        response = http.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        elapsed = time.monotonic() - started
        if response.status_code == status or elapsed > 5:
            assert response.status_code == status, response.text
            return elapsed
        time.sleep(0.01)


def test_a_key_stops_on_the_other_instance_within_a_second(
    two_gateways: tuple[GatewayProcess, GatewayProcess, str],
) -> None:
    first, second, manager = two_gateways
    auth = {"Authorization": f"Bearer {manager}"}
    with httpx.Client(timeout=10) as http:
        for change, status in (("revoke", 401), ("disable", 403)):
            created = http.post(f"{first.url}/api/keys", json={"name": change}, headers=auth)
            assert created.status_code == 201, created.text
            key, key_id = created.json()["key"], created.json()["id"]
            register_secret(key)
            # The second instance learns about the new key through Redis too (no 30 s wait).
            _refused_within(http, second.url, key, 200)
            if change == "revoke":
                response = http.delete(f"{first.url}/api/keys/{key_id}", headers=auth)
            else:
                response = http.patch(
                    f"{first.url}/api/keys/{key_id}", json={"disabled": True}, headers=auth
                )
            assert response.status_code == 200
            elapsed = _refused_within(http, second.url, key, status)
            assert elapsed < 1.0, (change, elapsed)
