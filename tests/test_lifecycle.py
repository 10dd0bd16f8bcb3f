"""Draining under load: a real ``xrouter serve`` process gets SIGTERM while JSON requests and
streams are waiting on a slow provider. It reports itself not ready, stops accepting
connections once the drain is over, still finishes every request and stream in full, writes
their usage and exits cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_processes import GatewayProcess, create_key, emulator_settings, environment
from tests.servers import BackgroundLoop
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.emulators.yandex import STATS_KEY
from xrouter.storage.migrate import upgrade_async

JSON_REQUESTS = 20
STREAMS = 3
# Every answer takes longer than the drain, so all of them are still running when the
# instance stops accepting connections.
DRAIN_SECONDS = 1.5
UPSTREAM_LATENCY_MS = 4000
STREAM_CHUNK_DELAY_MS = 300
MODEL = "yandex/yandexgpt"


@pytest.fixture(scope="module")
def slow_emulators() -> Iterator[dict[str, RunningEmulator]]:
    options = EmulatorOptions(
        latency_ms=UPSTREAM_LATENCY_MS, stream_chunks=6, stream_delay_ms=STREAM_CHUNK_DELAY_MS
    )
    loop = BackgroundLoop()
    running = {kind: loop.run(start_emulator(kind, options)) for kind in ("gigachat", "yandex")}
    yield running
    for emulator in running.values():
        loop.run(emulator.close())
    loop.close()


async def _key(database_url: str) -> tuple[str, str]:
    await upgrade_async(database_url)
    created = await create_key(database_url, "drain")
    return created.key, created.info.id


def _text(number: int) -> str:
    return f"Ответ номер {number}: всё, что было начато, должно дойти до конца."


class Outcomes:
    """What each client thread got: (status, full text matched) per request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[int, tuple[int, bool]] = {}
        self.errors: list[str] = []

    def add(self, number: int, status: int, complete: bool) -> None:
        with self.lock:
            self.results[number] = (status, complete)

    def fail(self, number: int, error: Exception) -> None:
        with self.lock:
            self.errors.append(f"request {number}: {error!r}")

    def count(self) -> int:
        with self.lock:
            return len(self.results) + len(self.errors)


def _ask(url: str, key: str, number: int, stream: bool, outcomes: Outcomes) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"[echo]{_text(number)}"}],
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {key}"}
    try:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        if stream:
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            chunks = [json.loads(event) for event in events[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            complete = events[-1] == "[DONE]" and text == _text(number)
        else:
            complete = response.json()["choices"][0]["message"]["content"] == _text(number)
        outcomes.add(number, response.status_code, complete)
    except Exception as error:  # the assertion below lists every failure
        outcomes.fail(number, error)


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_finishes_every_request_and_stream_in_flight(
    tmp_path: Path, slow_emulators: dict[str, RunningEmulator]
) -> None:
    database = tmp_path / "xrouter.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    key, key_id = asyncio.run(_key(database_url))
    env = environment(
        XROUTER_DATABASE_URL=database_url,
        XROUTER_SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        # Far beyond the test: the usage rows that arrive were written by the shutdown flush.
        XROUTER_USAGE_FLUSH_SECONDS="600",
        **emulator_settings(slow_emulators["gigachat"].url, slow_emulators["yandex"].url),
    )
    server = GatewayProcess(tmp_path, env)
    stats = slow_emulators["yandex"].app[STATS_KEY]
    before = stats.api_requests
    outcomes = Outcomes()
    clients = [
        threading.Thread(
            target=_ask, args=(server.url, key, number, number >= JSON_REQUESTS, outcomes)
        )
        for number in range(JSON_REQUESTS + STREAMS)
    ]
    try:
        for client in clients:
            client.start()
        # Every request has reached the provider and waits on its latency.
        deadline = time.monotonic() + 30
        while stats.api_requests < before + len(clients):
            assert time.monotonic() < deadline, "the requests never reached the provider"
            time.sleep(0.02)
        assert outcomes.count() == 0

        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        ready = httpx.get(f"{server.url}/ready", timeout=5)
        assert (ready.status_code, ready.json()["status"]) == (503, "draining")
        # Still serving while the load balancer takes the instance out.
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200

        # Once the drain is over, new connections are refused, while the answers are still
        # on their way.
        while not _refused(server.url):
            assert time.monotonic() - terminated < DRAIN_SECONDS + 5, "still accepting"
            time.sleep(0.05)
        assert time.monotonic() - terminated >= DRAIN_SECONDS
        assert outcomes.count() < len(clients)

        for client in clients:
            client.join(60)
        assert server.process.wait(60) == 0
    finally:
        output = server.terminate()
    assert outcomes.errors == [], output
    assert outcomes.results == {number: (200, True) for number in range(len(clients))}
    assert "unwritten" not in output, output
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT stream, status_code FROM usage_records WHERE key_id = ?", (key_id,)
        ).fetchall()
    assert sorted(rows) == sorted([(0, 200)] * JSON_REQUESTS + [(1, 200)] * STREAMS)
