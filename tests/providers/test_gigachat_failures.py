"""Every way a GigaChat call fails, as the routing layer sees it: status, code, ``retryable``
and ``retry_after``. Real HTTP against the emulator's injected faults."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY, GigaChatFaults
from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS, RunningEmulator, start_emulator
from xrouter.errors import UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.base import ModelTarget, UpstreamRequest
from xrouter.providers.gigachat import GigaChatConfig, GigaChatProvider
from xrouter.providers.transport import Timeouts, UpstreamTransport, create_session

TARGET = ModelTarget("gigachat", "GigaChat-2")
CHAT = {"model": "GigaChat-2", "messages": [{"role": "user", "content": "Привет"}]}
# upstream status -> (status, code, retryable)
STATUSES = {
    400: (400, "upstream_bad_request", False),
    401: (502, "upstream_auth_failed", False),
    402: (402, "insufficient_quota", True),
    403: (502, "upstream_permission_denied", True),
    404: (404, "model_not_found", False),
    413: (413, "request_too_large", False),
    422: (400, "upstream_invalid_params", False),
    429: (429, "upstream_rate_limited", True),
    500: (502, "upstream_server_error", True),
    503: (502, "upstream_server_error", True),
}


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator("gigachat")
    yield running
    await running.close()


@pytest.fixture
def faults(emulator: RunningEmulator) -> GigaChatFaults:
    return emulator.app[FAULTS_KEY]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with create_session(Timeouts(connect=2, read=0.5, total=10), 16) as client:
        yield client


def provider_at(url: str, session: aiohttp.ClientSession) -> GigaChatProvider:
    config = GigaChatConfig(
        base_url=f"{url}/api/v1",
        auth_url=f"{url}/api/v2/oauth",
        credentials=GIGACHAT_EMULATOR_CREDENTIALS,
    )
    return GigaChatProvider(config, session)


async def call(
    provider: GigaChatProvider, session: aiohttp.ClientSession, stream: bool
) -> UpstreamError:
    """Run one chat call the way the gateway does and return the error it ends with."""
    transport = UpstreamTransport(session)
    request = provider.chat_request(_request(stream), TARGET)
    with pytest.raises(UpstreamError) as caught:
        await _exchange(provider, transport, request, stream)
    return caught.value


async def _exchange(
    provider: GigaChatProvider, transport: UpstreamTransport, request: UpstreamRequest, stream: bool
) -> None:
    if not stream:
        provider.chat_reply(await transport.send(provider, request), TARGET)
        return
    decoder = provider.stream_decoder(TARGET)
    async for batch in transport.stream_line_batches(provider, request):
        for line in batch:
            decoder.feed(line)
    decoder.close()


def _request(stream: bool) -> ChatCompletionRequest:
    body = {**CHAT, "model": "gigachat/GigaChat-2", "stream": stream}
    return msgspec.json.decode(json.dumps(body), type=ChatCompletionRequest)


@pytest.mark.parametrize("upstream", sorted(STATUSES))
@pytest.mark.parametrize("stream", [False, True])
async def test_every_status_is_classified(
    emulator: RunningEmulator,
    faults: GigaChatFaults,
    session: aiohttp.ClientSession,
    upstream: int,
    stream: bool,
) -> None:
    faults.status = upstream
    faults.retry_after = "7" if upstream in {429, 503} else None
    error = await call(provider_at(emulator.url, session), session, stream)
    assert (error.status, error.code, error.retryable) == STATUSES[upstream]
    assert error.retry_after == (7.0 if upstream in {429, 503} else None)
    assert GIGACHAT_EMULATOR_CREDENTIALS not in error.message


@pytest.mark.parametrize(
    ("mode", "stream", "status", "code"),
    [
        ("reset", False, 502, "upstream_disconnected"),
        ("reset", True, 502, "upstream_disconnected"),
        ("stall", False, 504, "upstream_timeout"),
        ("stall", True, 504, "upstream_timeout"),
        ("malformed", False, 502, "upstream_malformed_response"),
        ("malformed", True, 502, "upstream_malformed_response"),
        ("truncated", False, 502, "upstream_disconnected"),
        ("truncated", True, 502, "upstream_truncated_stream"),
    ],
)
async def test_transport_failures_are_retryable(
    emulator: RunningEmulator,
    faults: GigaChatFaults,
    session: aiohttp.ClientSession,
    mode: str,
    stream: bool,
    status: int,
    code: str,
) -> None:
    faults.mode = mode  # type: ignore[assignment]
    faults.stall_seconds = 1
    error = await call(provider_at(emulator.url, session), session, stream)
    assert (error.status, error.code, error.retryable) == (status, code, True)


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    error = await call(provider_at(closed, session), session, stream=False)
    assert (error.status, error.code, error.retryable) == (502, "upstream_unreachable", True)
    assert "127.0.0.1" not in error.message


async def test_a_refused_token_is_renewed_once_and_the_call_retried(
    emulator: RunningEmulator, faults: GigaChatFaults, session: aiohttp.ClientSession
) -> None:
    provider = provider_at(emulator.url, session)
    transport = UpstreamTransport(session)
    stats = emulator.app[STATS_KEY]
    request = provider.chat_request(_request(False), TARGET)
    await transport.send(provider, request)
    before = stats.token_requests
    faults.status, faults.remaining = 401, 1
    reply = provider.chat_reply(await transport.send(provider, request), TARGET)
    assert reply.choices[0].message.content
    assert stats.token_requests == before + 1
    faults.status, faults.remaining = 401, 2
    error = await call(provider, session, stream=False)
    assert (error.status, error.code, error.retryable) == (502, "upstream_auth_failed", False)
