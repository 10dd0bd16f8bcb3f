"""The upstream transport's per-request options, and how it cuts a stream into lines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.test_utils import TestServer

from xrouter.errors import UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest, EmbeddingsRequest, ModelCard
from xrouter.providers.base import (
    ChatReply,
    EmbeddingsReply,
    ModelTarget,
    Provider,
    StreamDecoder,
    UpstreamRequest,
)
from xrouter.providers.transport import Timeouts, UpstreamTransport, _LineSplitter


def test_aiohttp_sees_only_the_connect_timeout_built_once_per_value() -> None:
    # The transport bounds the head, the body and the whole exchange itself; the executor gives
    # every request its own first-byte budget, which aiohttp never sees either.
    first = Timeouts(connect=3.0, read=40.0, total=90.0, first_byte=1.25).connect_timeout()
    second = Timeouts(connect=3.0, read=41.0, total=95.0, first_byte=7.5).connect_timeout()
    assert first is second
    assert (first.total, first.connect, first.sock_connect, first.sock_read) == (
        None,
        None,
        3.0,
        None,
    )
    assert Timeouts(connect=4.0).connect_timeout().sock_connect == 4.0


def test_the_session_default_bounds_everything_and_reads_back() -> None:
    timeouts = Timeouts(connect=3.0, read=40.0, total=90.0)
    default = timeouts.client_timeout()
    assert (default.total, default.sock_connect, default.sock_read) == (90.0, 3.0, 40.0)
    assert Timeouts.of(default) == timeouts
    unbounded = Timeouts.of(aiohttp.ClientTimeout(total=None, sock_connect=5.0))
    assert unbounded.connect == 5.0
    assert unbounded.read == unbounded.total >= 365 * 86400


def test_lines_are_cut_across_reads_without_their_endings() -> None:
    splitter = _LineSplitter(64)
    assert splitter.feed(b"data: 1\r\n\r\ndata:") == [b"data: 1", b""]
    assert splitter.feed(b" 2") == []
    assert splitter.feed(b"\n\ndata: 3") == [b"data: 2", b""]
    assert splitter.rest() == b"data: 3"


def test_a_line_as_long_as_the_limit_is_refused_as_aiohttp_refuses_it() -> None:
    assert _LineSplitter(8).feed(b"1234567\n") == [b"1234567"]
    with pytest.raises(LineTooLong):
        _LineSplitter(8).feed(b"12345678\n")
    splitter = _LineSplitter(8)
    assert splitter.feed(b"12345678") == []  # unfinished: it may still end here
    with pytest.raises(LineTooLong):
        splitter.feed(b"9")


class _Provider(Provider):
    name = "test"

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer token"}

    async def list_models(self) -> list[ModelCard]:
        return []

    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        raise NotImplementedError

    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        raise NotImplementedError

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        raise NotImplementedError

    def embeddings_requests(
        self, request: EmbeddingsRequest, texts: list[str], target: ModelTarget
    ) -> list[UpstreamRequest]:
        raise NotImplementedError

    def embeddings_reply(self, bodies: list[bytes], target: ModelTarget) -> EmbeddingsReply:
        raise NotImplementedError

    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        return UpstreamError("refused", provider=self.name, status=502)


async def test_lines_that_arrive_together_come_as_one_batch() -> None:
    arrived = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: 1\n\ndata: 2\n\ndata: 3\n\n")
        await arrived.wait()  # the next line comes once the client has the first three
        await response.write(b"data: 4\n\n")
        await response.write_eof()
        return response

    batches = await _batches(answer, Timeouts(), on_batch=arrived.set)
    assert batches == [[b"data: 1", b"data: 2", b"data: 3"], [b"data: 4"]]


@pytest.mark.parametrize("first_byte", [None, 5.0])
async def test_a_stream_yields_each_line_however_the_reads_cut_it(
    first_byte: float | None,
) -> None:
    pieces = [b"data: 1\r\n", b"\r\ndata: 2\n\nda", b"ta: 3\n", b"\n", b"data: 4"]

    async def answer(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer token"
        assert request.headers["Accept"] == "text/event-stream"
        response = web.StreamResponse()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.01)  # one network read each
        await response.write_eof()
        return response

    timeouts = Timeouts(first_byte=first_byte)
    batches = await _batches(answer, timeouts, {"Accept": "text/event-stream"})
    lines = [line for batch in batches for line in batch]
    assert lines == [b"data: 1", b"data: 2", b"data: 3", b"data: 4"]


async def _batches(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
    timeouts: Timeouts,
    headers: dict[str, str] | None = None,
    on_batch: Callable[[], object] = lambda: None,
) -> list[list[bytes]]:
    """The line batches the transport yields for the stream ``answer`` sends."""
    app = web.Application()
    app.router.add_post("/stream", answer)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        transport = UpstreamTransport(session)
        request = UpstreamRequest("POST", str(server.make_url("/stream")), b"{}", headers or {})
        batches = []
        async for batch in transport.stream_line_batches(_Provider(), request, timeouts):
            batches.append(batch)
            on_batch()
        return batches


async def _sent(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]], timeouts: Timeouts
) -> bytes:
    """The body the transport returns for the answer ``answer`` sends."""
    app = web.Application()
    app.router.add_post("/chat", answer)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        transport = UpstreamTransport(session)
        request = UpstreamRequest("POST", str(server.make_url("/chat")), b"{}", {})
        return await transport.send(_Provider(), request, timeouts)


def _trickle(
    pieces: list[bytes], pause: float, status: int = 200
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An answer whose head comes at once and whose body comes in ``pieces``, ``pause``
    seconds apart."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        await response.prepare(request)
        for piece in pieces:
            await asyncio.sleep(pause)
            await response.write(piece)
        await response.write_eof()
        return response

    return answer


async def _timed_out(pending: Awaitable[object]) -> UpstreamError:
    with pytest.raises(UpstreamError) as raised:
        await pending
    assert (raised.value.status, raised.value.code) == (504, "upstream_timeout")
    return raised.value


async def test_a_head_later_than_the_read_timeout_times_out() -> None:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="late")

    await _timed_out(_sent(answer, Timeouts(read=0.2)))


async def test_a_body_that_stalls_longer_than_the_read_timeout_times_out() -> None:
    await _timed_out(_sent(_trickle([b'{"a":', b"1}"], pause=0.5), Timeouts(read=0.2)))


async def test_a_body_that_keeps_coming_within_the_read_timeout_is_read_whole() -> None:
    # Each wait is bounded, not the body: four pauses add up to more than the read timeout.
    body = await _sent(_trickle([b"[1", b",2", b",3", b"]"], pause=0.1), Timeouts(read=0.3))
    assert body == b"[1,2,3]"


async def test_a_stream_that_keeps_coming_stops_at_the_total_timeout() -> None:
    pieces = [f"data: {n}\n\n".encode() for n in range(40)]
    started = asyncio.get_running_loop().time()
    await _timed_out(_batches(_trickle(pieces, pause=0.05), Timeouts(read=0.3, total=0.5)))
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_a_stream_silent_longer_than_the_read_timeout_times_out() -> None:
    await _timed_out(_batches(_trickle([b"data: 1\n\n", b"data: 2\n\n"], 0.5), Timeouts(read=0.2)))


async def test_a_stream_first_line_later_than_the_first_byte_deadline_times_out() -> None:
    # The head comes at once; the first line is due by the first-byte deadline all the same.
    await _timed_out(
        _batches(_trickle([b"data: 1\n\n"], pause=0.5), Timeouts(read=5.0, first_byte=0.2))
    )


async def test_an_error_body_that_stalls_times_out() -> None:
    await _timed_out(_sent(_trickle([b'{"error":', b"1}"], 0.5, status=500), Timeouts(read=0.2)))
