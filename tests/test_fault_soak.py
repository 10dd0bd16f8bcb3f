"""The fault campaign as a soak: for ``XROUTER_SOAK_SECONDS`` a real ``xrouter serve`` process
takes steady load while its faults come round again and again: a misbehaving GigaChat (slow
headers, a trickling body, HTML pages, a body far too large), PostgreSQL cut off and restored,
Redis stopped and restarted, clients leaving mid-stream. At the end the instance must be
healthy, its memory must have stopped growing, and every request that reached a provider must
have exactly one usage row.

Skipped unless the variable is set (``make test`` stays fast)::

    XROUTER_SOAK_SECONDS=600 .venv/bin/pytest tests/test_fault_soak.py -p no:randomly
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.gateway.spoiling_proxy import MODES, Spoiler, start_spoiling_proxy
from tests.gateway_processes import GatewayProcess, create_key, emulator_settings, environment
from tests.limits.redis_server import PrivateRedis
from tests.servers import BackgroundLoop
from tests.usage.cuttable_proxy import CuttableProxy
from tests.usage.usage_rows import usage_rows
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.migrate import upgrade

SOAK_SECONDS = float(os.environ.get("XROUTER_SOAK_SECONDS") or 0)
pytestmark = pytest.mark.skipif(
    SOAK_SECONDS <= 0, reason="a soak: runs only with XROUTER_SOAK_SECONDS set (e.g. 600)"
)

CLIENTS = 4
# How long each provider fault, and each database or Redis outage, lasts.
FAULT_SECONDS = 2.0
OUTAGE_SECONDS = 5.0
BOUND_SECONDS = 30.0
# Resident memory is sampled after every round of faults. The allocator keeps part of what
# bursts of large answers used, so the level rises for a few rounds and then holds; a leak
# keeps rising. The second half of the soak may not exceed the first half's peak by more than
# this.
RSS_GROWTH_LIMIT_BYTES = 64 * 1024 * 1024
MODELS = {"gigachat": "gigachat/GigaChat-2-Max", "yandex": "yandex/yandexgpt"}
# What a request to the misbehaving GigaChat may get instead of 200 (no fallback is routed).
FAULT_CODES = {
    "upstream_timeout",
    "upstream_malformed_response",
    "upstream_server_error",
    "upstream_response_too_large",
    "upstream_truncated_stream",
    "upstream_disconnected",
    "no_target_available",
}


@dataclass
class Load:
    """What the clients got: per provider, each status and error code; and the requests that
    reached routing (each must leave one usage row)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[tuple[str, int, str | None]] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)
    # One message for each error code seen, for the report of a failure.
    messages: dict[str, str] = field(default_factory=dict)
    routed: int = 0

    def add(self, provider: str, response: httpx.Response) -> None:
        code = None
        if response.status_code != 200:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "not an OpenAI error", "message": response.text[:200]}
            code = error.get("code")
            self.messages.setdefault(str(code), str(error.get("message")))
        with self.lock:
            self.outcomes[(provider, response.status_code, code)] += 1
            self.routed += 1

    def left_mid_stream(self) -> None:
        with self.lock:
            self.routed += 1

    def total(self) -> int:
        with self.lock:
            return self.routed


def _clients(url: str, key: str, load: Load, stop: threading.Event) -> list[threading.Thread]:
    def run(first: int) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=BOUND_SECONDS) as http:
            number = first
            while not stop.is_set():
                number += 1
                provider = "gigachat" if number % 2 else "yandex"
                body = {
                    "model": MODELS[provider],
                    "messages": [{"role": "user", "content": f"Запрос {number}"}],
                    "stream": number % 5 == 0,
                }
                try:
                    load.add(provider, http.post("/v1/chat/completions", json=body))
                except httpx.TransportError as error:
                    with load.lock:
                        load.transport_errors.append(repr(error))

    return [threading.Thread(target=run, args=(index,)) for index in range(CLIENTS)]


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _ready_status(url: str) -> tuple[int, str]:
    response = httpx.get(f"{url}/ready", timeout=10)
    return response.status_code, response.json()["status"]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@dataclass
class Soaked:
    gateway: GatewayProcess
    spoiler: Spoiler
    database: CuttableProxy
    redis: PrivateRedis
    loop: BackgroundLoop
    key: str
    key_id: str
    database_url: str


@pytest.fixture
def soaked(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    postgres_url: str,
    tmp_path: Path,
) -> Iterator[Soaked]:
    spoiler = Spoiler()
    spoiling_url, runner = start_spoiling_proxy(loop, emulators["gigachat"].url, spoiler)
    url = make_url(postgres_url)
    database = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    loop.run(database.start())
    upgrade(postgres_url)
    created = asyncio.run(create_key(postgres_url, "soak"))
    redis = PrivateRedis(tmp_path)
    redis.start()
    through_proxy = url.set(host="127.0.0.1", port=database.port)
    env = environment(
        XROUTER_DATABASE_URL=through_proxy.render_as_string(hide_password=False),
        XROUTER_REDIS_URL=redis.url,
        # Short enough for the slow faults to end in time, long enough for the emulators, which
        # share the test process with the proxies and the load, to answer every healthy call.
        XROUTER_UPSTREAM_READ_TIMEOUT_SECONDS="3",
        XROUTER_RATE_LIMIT_KEY_RPM="1000000",
        **emulator_settings(spoiling_url, emulators["yandex"].url),
    )
    gateway = GatewayProcess(tmp_path, env)
    try:
        yield Soaked(
            gateway, spoiler, database, redis, loop, created.key, created.info.id, postgres_url
        )
    finally:
        gateway.terminate()
        redis.stop()
        loop.run(database.cut())
        loop.run(runner.cleanup())


def _one_round(soak: Soaked, load: Load) -> None:
    """Every fault once, each followed by the instance's recovery."""
    url = soak.gateway.url
    for mode in MODES:
        soak.spoiler.mode = mode
        time.sleep(FAULT_SECONDS)
        soak.spoiler.mode = None
        time.sleep(FAULT_SECONDS / 2)
    soak.loop.run(soak.database.cut())
    _wait_for(lambda: _ready_status(url)[0] == 503, "/ready never noticed the database")
    time.sleep(OUTAGE_SECONDS)
    soak.loop.run(soak.database.start())
    _wait_for(lambda: _ready_status(url) == (200, "ready"), "no recovery from the database")
    soak.redis.stop()
    _wait_for(lambda: _ready_status(url) == (200, "degraded"), "/ready never noticed Redis")
    time.sleep(OUTAGE_SECONDS)
    soak.redis.start()
    _wait_for(lambda: _ready_status(url) == (200, "ready"), "no recovery from Redis")
    body = {"model": MODELS["yandex"], "messages": [{"role": "user", "content": "Длинно"}]}
    headers = {"Authorization": f"Bearer {soak.key}"}
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={**body, "stream": True},
        headers=headers,
        timeout=BOUND_SECONDS,
    ) as response:
        assert response.status_code == 200
        next(response.iter_lines())
    load.left_mid_stream()


@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_faults_under_steady_load_for_the_soak_period(soaked: Soaked) -> None:
    url, pid = soaked.gateway.url, soaked.gateway.process.pid
    load = Load()
    stop = threading.Event()
    clients = _clients(url, soaked.key, load, stop)
    for client in clients:
        client.start()
    deadline = time.monotonic() + SOAK_SECONDS
    rss: list[int] = []
    try:
        while not rss or time.monotonic() < deadline:
            _one_round(soaked, load)
            rss.append(_rss_bytes(pid))
    finally:
        stop.set()
        for client in clients:
            client.join(BOUND_SECONDS * 2)

    assert load.transport_errors == []
    outcomes = dict(load.outcomes)
    report = f"{sorted(outcomes.items(), key=str)}\n{load.messages}"
    assert all(status == 200 for (provider, status, _) in outcomes if provider == "yandex"), report
    assert {
        code for (provider, status, code) in outcomes if provider == "gigachat" and status != 200
    } <= FAULT_CODES, report
    assert outcomes.get(("gigachat", 200, None), 0) > 0

    headers = {"Authorization": f"Bearer {soaked.key}"}
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    assert _ready_status(url) == (200, "ready")
    for provider, model in MODELS.items():
        body = {"model": model, "messages": [{"role": "user", "content": "Всё хорошо?"}]}
        response = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers=headers, timeout=BOUND_SECONDS
        )
        assert response.status_code == 200, (provider, response.text)
        load.add(provider, response)

    expected = load.total()
    _wait_for(
        lambda: usage_rows(soaked.database_url, soaked.key_id) >= expected,
        f"fewer than {expected} usage rows",
    )
    assert usage_rows(soaked.database_url, soaked.key_id) == expected
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "\nxrouter_usage_dropped 0.0\n" in metrics
    first_half, second_half = rss[: (len(rss) + 1) // 2], rss[(len(rss) + 1) // 2 :]
    megabytes = [size // 2**20 for size in rss]
    assert max(second_half, default=0) - max(first_half) < RSS_GROWTH_LIMIT_BYTES, megabytes
