"""The upstream fault campaign: a provider that answers slowly, trickles its body, sends the
wrong content type or far too much, and a client that leaves mid-stream. Each case asserts what
the client sees, that the gateway stays healthy afterwards, and is bounded in time.

The misbehaving provider is a proxy in front of the GigaChat emulator: it relays everything
(OAuth, models) and spoils chat completions the way ``Spoiler.mode`` says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY
from xrouter.emulators.server import CONNECTIONS_KEY, RunningEmulator
from xrouter.providers.transport import MAX_RESPONSE_BYTES
from xrouter.storage.migrate import upgrade

CHAT = "/v1/chat/completions"
MODEL = "gigachat/GigaChat-2-Max"
REQUEST = {"model": MODEL, "messages": [{"role": "user", "content": "Привет"}]}
READ_TIMEOUT = 0.5
# Every case must end well within this.
BOUND_SECONDS = 10


SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass
class Spoiler:
    """How the proxy answers the next chat completions (None: relay them)."""

    mode: str | None = None


async def _relay(
    request: web.Request, upstream: str, session: aiohttp.ClientSession
) -> web.Response:
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
    }
    async with session.request(
        request.method, f"{upstream}{request.rel_url}", headers=headers, data=await request.read()
    ) as answer:
        body = await answer.read()
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() in {"content-type", "retry-after"}
        }
        return web.Response(status=answer.status, body=body, headers=kept)


def _proxy_app(upstream: str, spoiler: Spoiler) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:
        mode = spoiler.mode if request.path.endswith("/chat/completions") else None
        if mode == "slow_headers":
            await request.read()
            await asyncio.sleep(BOUND_SECONDS)
        if mode in {"slow_body", "huge"}:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"choices": [')
            if mode == "slow_body":
                await asyncio.sleep(BOUND_SECONDS)
            else:
                chunk = b" " * 1024 * 1024
                for _ in range(MAX_RESPONSE_BYTES // len(chunk) + 2):
                    await response.write(chunk)
            return response
        if mode == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=200, body=page, content_type="text/html")
        if mode == "html_503":
            page = b"<html><body>Service Temporarily Unavailable</body></html>"
            return web.Response(status=503, body=page, content_type="text/html")
        return await _relay(request, upstream, app[SESSION])

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture(scope="module")
def spoiler() -> Spoiler:
    return Spoiler()


@pytest.fixture(scope="module")
def proxy(
    loop: BackgroundLoop, emulators: dict[str, RunningEmulator], spoiler: Spoiler
) -> Iterator[str]:
    async def start() -> web.AppRunner:
        runner = web.AppRunner(_proxy_app(emulators["gigachat"].url, spoiler))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = loop.run(start())
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
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
