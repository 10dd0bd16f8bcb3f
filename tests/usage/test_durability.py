"""Usage survives a SIGTERM under load: every response a client received has exactly one usage
record after a restart. The writer's timer is set far beyond the test, so the records that
arrive were written by the shutdown flush."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.gateway_processes import GatewayProcess, create_key, environment
from xrouter.storage.migrate import upgrade_async

CLIENTS = 8
LOAD_SECONDS = 1.5


async def _keys(database_url: str) -> tuple[str, str, str]:
    await upgrade_async(database_url)
    inference = await create_key(database_url, "load")
    manager = await create_key(database_url, "ops", kind="management")
    return inference.key, inference.info.id, manager.key


def _load(url: str, key: str, stop: threading.Event, received: list[int]) -> None:
    body = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
        while not stop.is_set():
            try:
                response = http.post(f"{url}/v1/chat/completions", json=body)
            except httpx.TransportError:
                time.sleep(0.01)  # the server is going away: nothing was answered
                continue
            received.append(response.status_code)


def test_sigterm_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    database = tmp_path / "xrouter.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    key, key_id, manager = asyncio.run(_keys(database_url))
    env = environment(XROUTER_DATABASE_URL=database_url, XROUTER_USAGE_FLUSH_SECONDS="600")
    server = GatewayProcess(tmp_path, env)
    stop = threading.Event()
    received: list[int] = []
    clients = [
        threading.Thread(target=_load, args=(server.url, key, stop, received))
        for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(LOAD_SECONDS)
    in_flight_at_term = len(received)
    output = server.terminate()
    stop.set()
    for client in clients:
        client.join(30)
    assert in_flight_at_term > 0
    assert len(received) >= in_flight_at_term
    assert "unwritten" not in output, output

    with sqlite3.connect(database) as connection:
        [(records,)] = connection.execute(
            "SELECT count(*) FROM usage_records WHERE key_id = ?", (key_id,)
        ).fetchall()
        [(rolled_up,)] = connection.execute(
            "SELECT sum(requests) FROM usage_rollups WHERE key_id = ? AND granularity = 'day'",
            (key_id,),
        ).fetchall()
    assert records == len(received)
    assert rolled_up == len(received)

    restarted = GatewayProcess(tmp_path, env)
    try:
        usage = httpx.get(
            f"{restarted.url}/api/keys/{key_id}/usage",
            params={"granularity": "day"},
            headers={"Authorization": f"Bearer {manager}"},
        )
    finally:
        restarted.terminate()
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"]["requests"] == len(received)
