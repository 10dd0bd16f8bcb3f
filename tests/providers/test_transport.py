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


def test_a_client_timeout_is_built_once_whatever_the_first_byte_deadline() -> None:
    # The executor gives every request its own first-byte budget; aiohttp never sees it.
    first = Timeouts(connect=3.0, read=40.0, total=90.0, first_byte=1.25).client_timeout()
    second = Timeouts(connect=3.0, read=40.0, total=90.0, first_byte=7.5).client_timeout()
    assert first is second
    assert (first.total, first.sock_connect, first.sock_read) == (90.0, 3.0, 40.0)


def test_timeouts_that_differ_for_aiohttp_get_their_own() -> None:
    base = Timeouts(connect=3.0, read=40.0, total=90.0).client_timeout()
    slower = Timeouts(connect=3.0, read=41.0, total=90.0).client_timeout()
    assert slower is not base
    assert slower.sock_read == 41.0


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
