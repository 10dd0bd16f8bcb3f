"""The upstream fault campaign: a provider that answers slowly, trickles its body, sends the
wrong content type or far too much, and a client that leaves mid-stream. Each case asserts what
the client sees, that the gateway stays healthy afterwards, and is bounded in time.

The misbehaving provider is a proxy in front of the GigaChat emulator (``spoiling_proxy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.spoiling_proxy import Spoiler, start_spoiling_proxy
from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY
from xrouter.emulators.server import CONNECTIONS_KEY, RunningEmulator
from xrouter.storage.migrate import upgrade

CHAT = "/v1/chat/completions"
MODEL = "gigachat/GigaChat-2-Max"
REQUEST = {"model": MODEL, "messages": [{"role": "user", "content": "Привет"}]}
READ_TIMEOUT = 0.5
# Every case must end well within this.
BOUND_SECONDS = 10


@pytest.fixture(scope="module")
def spoiler() -> Spoiler:
    return Spoiler()


@pytest.fixture(scope="module")
def proxy(
    loop: BackgroundLoop, emulators: dict[str, RunningEmulator], spoiler: Spoiler
) -> Iterator[str]:
    url, runner = start_spoiling_proxy(loop, emulators["gigachat"].url, spoiler)
    yield url
    loop.run(runner.cleanup())


@pytest.fixture(scope="module")
def faulty(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    proxy: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    database: Path = tmp_path_factory.mktemp("faults") / "xrouter.db"
    settings = gateway_settings(
        database,
        proxy,
        emulators["yandex"].url,
        upstream_read_timeout_seconds=READ_TIMEOUT,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key(faulty: RunningGateway) -> str:
    return faulty.create_key("faults").key


@pytest.fixture
def client(faulty: RunningGateway, key: str, spoiler: Spoiler) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=faulty.url, headers=headers, timeout=BOUND_SECONDS * 2) as http:
        yield http
        spoiler.mode = None
        # Healthy afterwards: the same provider answers the next request normally.
        assert http.get("/health").status_code == 200
        answer = http.post(CHAT, json=REQUEST)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("slow_headers", 504, "upstream_timeout"),
        ("slow_body", 504, "upstream_timeout"),
        ("html", 502, "upstream_malformed_response"),
        ("html_503", 502, "upstream_server_error"),
        ("huge", 502, "upstream_response_too_large"),
    ],
)
def test_a_misbehaving_provider_gets_a_mapped_error(
    client: httpx.Client, spoiler: Spoiler, mode: str, status: int, code: str | None
) -> None:
    spoiler.mode = mode
    started = time.monotonic()
    response = client.post(CHAT, json=REQUEST)
    assert time.monotonic() - started < BOUND_SECONDS
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    # The provider's page is never relayed.
    assert "<html" not in response.text


def test_a_stream_with_an_endless_line_gets_a_mapped_error(
    client: httpx.Client, spoiler: Spoiler
) -> None:
    spoiler.mode = "huge"  # one "line" of 32 MiB, no event boundary in sight
    started = time.monotonic()
    response = client.post(CHAT, json={**REQUEST, "stream": True})
    assert time.monotonic() - started < BOUND_SECONDS
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_response_too_large"


def test_a_client_leaving_mid_stream_closes_the_upstream_and_is_recorded(
    gateway: RunningGateway,
    api_key: str,
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
) -> None:
    gigachat = emulators["gigachat"]
    faults = gigachat.app[FAULTS_KEY]
    disconnects = gigachat.app[CONNECTIONS_KEY].client_disconnects
    # One event, then nothing until released. For every stream: a count would also be used up
    # by the catalogue's background refresh.
    faults.mode = "hold"
    # Other tests shorten the hold; clear() leaves it.
    held_for, faults.stall_seconds = faults.stall_seconds, 30.0
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        with (
            httpx.Client(base_url=gateway.url, headers=headers, timeout=BOUND_SECONDS) as http,
            http.stream("POST", CHAT, json={**REQUEST, "stream": True}) as response,
        ):
            request_id = response.headers["x-request-id"]
            assert next(response.iter_lines()).startswith("data: ")
        # The client is gone; the held upstream stream must be closed, not left waiting.
        deadline = time.monotonic() + BOUND_SECONDS
        while gigachat.app[CONNECTIONS_KEY].client_disconnects == disconnects:
            assert time.monotonic() < deadline, "the upstream stream was never closed"
            time.sleep(0.02)
    finally:
        loop.loop.call_soon_threadsafe(faults.release)
        faults.clear()
        faults.stall_seconds = held_for
    [record] = gateway.usage_records(request_id)
    assert record.stream
    assert record.ttft_ms is not None
    assert gateway.runtime.metrics.get_sample_value("xrouter_active_streams") == 0
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        assert http.post(CHAT, json=REQUEST).status_code == 200
