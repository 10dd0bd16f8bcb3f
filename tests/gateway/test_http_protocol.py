"""The gateway's HTTP protocol under a real uvicorn over loopback: responses as uvicorn writes
them, in fewer writes, and the disconnect extension."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from xrouter.gateway.http_protocol import GatewayHttpProtocol
from xrouter.routing.disconnect import DISCONNECT_EXTENSION

BODY = b'{"answer": 42}'
SLOW_CHUNK_SECONDS = 1.0
# Far more than the socket buffers hold: the transport pauses writing and the app waits.
LARGE_CHUNK = bytes(range(256)) * 4096
LARGE_CHUNKS = 32


class CountingTransport:
    """A transport that records what is written through it."""

    def __init__(self, inner: asyncio.Transport, writes: list[bytes]) -> None:
        self._inner = inner
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def counting(protocol: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    """``protocol`` writing through a ``CountingTransport`` that appends to ``writes``."""

    class Counting(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(CountingTransport(transport, writes))

    return Counting


@asynccontextmanager
async def serving(
    app: Callable[[Scope, Receive, Send], Any], protocol: type[asyncio.Protocol]
) -> AsyncIterator[int]:
    """``app`` under uvicorn with ``protocol`` in this event loop; yields the port."""
    config = uvicorn.Config(app, http=protocol, loop="none", lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server stopped during start"
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Recorder:
    """The test app: one behaviour per path, with what it saw."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.disconnected = asyncio.Event()
        self.discarded_ran = False
        self.waiting = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        try:
            await getattr(self, path.strip("/").replace("-", "_"))(scope, receive, send)
        except RuntimeError as error:
            self.errors.append(str(error))
            raise

    async def json(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    async def bad_value(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-ok", b"fine\tvalue"), (b"x-bad", b"line\x01break")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def bad_value_then_name(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn checks header by header, name before value: the value comes first here.
        headers = [(b"x-bad", b"a\x7fb"), (b"x bad", b"fine")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def bad_name(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-ok", b"fine"), (b"x:bad", b"fine")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def no_content(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"first", b"second"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def slow_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(SLOW_CHUNK_SECONDS)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    async def large(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"%d" % (LARGE_CHUNKS * len(LARGE_CHUNK)))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(LARGE_CHUNKS):
            await send({"type": "http.response.body", "body": LARGE_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def closing(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"connection", b"Keep-Alive, Close"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait(self, scope: Scope, receive: Receive, send: Send) -> None:
        notice = scope["extensions"][DISCONNECT_EXTENSION]

        def discarded() -> None:
            self.discarded_ran = True

        notice["add"](discarded)
        notice["discard"](discarded)
        notice["add"](self.disconnected.set)
        self.waiting.set()
        try:
            await self.disconnected.wait()
        finally:
            notice["discard"](self.disconnected.set)

    async def register_late(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the (empty) body
        self.waiting.set()
        assert (await receive())["type"] == "http.disconnect"
        scope["extensions"][DISCONNECT_EXTENSION]["add"](self.disconnected.set)

    async def answer_and_stay_registered(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT_EXTENSION]["add"](self.disconnected.set)
        await self.json(scope, receive, send)


class Connection:
    """A raw HTTP/1.1 client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def request(self, path: str, method: str = "GET", extra: str = "") -> None:
        self.writer.write(f"{method} {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n".encode())

    async def head(self) -> tuple[bytes, dict[str, str]]:
        """The next response's status line and headers (lower-case names)."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        status, *lines = raw.decode().removesuffix("\r\n\r\n").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        return status.encode(), {name.lower(): value for name, value in headers.items()}

    async def body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            return await asyncio.wait_for(self.reader.readuntil(b"0\r\n\r\n"), 5)
        return await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 5)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
def app() -> Recorder:
    return Recorder()


@pytest.fixture
async def port(app: Recorder) -> AsyncIterator[int]:
    async with serving(app, GatewayHttpProtocol) as port:
        yield port


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Connection]:
    connection = await Connection.open(port)
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def counted_client(
    app: Recorder, protocol: type[HttpToolsProtocol]
) -> AsyncIterator[tuple[Connection, list[bytes]]]:
    """A client of ``app`` served by ``protocol``, and the list of the server's writes."""
    writes: list[bytes] = []
    async with serving(app, counting(protocol, writes)) as port, connect(port) as client:
        yield client, writes


@pytest.fixture
async def client(port: int) -> AsyncIterator[Connection]:
    async with connect(port) as connection:
        yield connection


@pytest.mark.parametrize(
    ("protocol", "expected_writes"), [(GatewayHttpProtocol, 1), (HttpToolsProtocol, 2)]
)
async def test_the_head_and_a_body_go_out_in_one_write(
    app: Recorder, protocol: type[HttpToolsProtocol], expected_writes: int
) -> None:
    async with counted_client(app, protocol) as (client, writes):
        client.request("/json")
        status, headers = await client.head()
        assert status == b"HTTP/1.1 200 OK"
        assert headers["content-type"] == "application/json"
        assert await client.body(headers) == BODY
    assert len(writes) == expected_writes  # uvicorn's own protocol writes twice
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"".join(writes).endswith(b"\r\n\r\n" + BODY)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/bad-value", "Invalid HTTP header value."),
        ("/bad-name", "Invalid HTTP header name."),
        ("/bad-value-then-name", "Invalid HTTP header value."),
    ],
)
@pytest.mark.parametrize("protocol", [GatewayHttpProtocol, HttpToolsProtocol])
async def test_a_forbidden_character_in_a_header_fails_as_under_uvicorn(
    app: Recorder, protocol: type[HttpToolsProtocol], path: str, error: str
) -> None:
    async with serving(app, protocol) as port, connect(port) as client:
        client.request(path)
        # The response had started: uvicorn closes the connection without a 500.
        assert await client.closed()
    assert app.errors == [error]


async def test_a_head_request_gets_the_head_only_and_the_connection_stays(
    client: Connection,
) -> None:
    client.request("/json", method="HEAD")
    status, headers = await client.head()
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == str(len(BODY))
    assert "transfer-encoding" not in headers
    client.request("/json")  # had the HEAD answer carried a body, this would misparse
    status, headers = await client.head()
    assert status == b"HTTP/1.1 200 OK"
    assert await client.body(headers) == BODY


async def test_a_204_has_no_body_and_no_chunked_encoding(client: Connection) -> None:
    client.request("/no-content")
    status, headers = await client.head()
    assert status == b"HTTP/1.1 204 No Content"
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers
    client.request("/json")
    status, _ = await client.head()
    assert status == b"HTTP/1.1 200 OK"


async def test_a_stream_is_chunked_and_its_head_leaves_with_the_first_chunk(
    app: Recorder,
) -> None:
    async with counted_client(app, GatewayHttpProtocol) as (client, writes):
        client.request("/stream")
        _, headers = await client.head()
        assert headers["transfer-encoding"] == "chunked"
        assert await client.body(headers) == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
    assert writes[0].endswith(b"\r\n\r\n5\r\nfirst\r\n")
    assert writes[1:] == [b"6\r\nsecond\r\n", b"0\r\n\r\n"]


async def test_a_slow_first_chunk_does_not_hold_back_the_head(app: Recorder) -> None:
    async with counted_client(app, GatewayHttpProtocol) as (client, writes):
        started = time.monotonic()
        client.request("/slow-stream")
        _, headers = await client.head()
        assert time.monotonic() - started < SLOW_CHUNK_SECONDS / 2
        assert await client.body(headers) == b"4\r\nlate\r\n0\r\n\r\n"
    assert writes[0].endswith(b"\r\n\r\n")  # the head, alone
    assert writes[1] == b"4\r\nlate\r\n0\r\n\r\n"


async def test_several_requests_share_one_connection(client: Connection) -> None:
    for _ in range(3):
        client.request("/json")
        status, headers = await client.head()
        assert status == b"HTTP/1.1 200 OK"
        assert "connection" not in headers
        assert await client.body(headers) == BODY
    client.request("/stream")
    _, headers = await client.head()
    assert await client.body(headers) == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"


async def test_pipelined_requests_are_answered_in_order(client: Connection) -> None:
    client.request("/stream")
    client.request("/json", method="HEAD")
    client.request("/json")
    _, headers = await client.head()
    assert await client.body(headers) == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
    _, headers = await client.head()
    assert headers["content-length"] == str(len(BODY))
    _, headers = await client.head()
    assert await client.body(headers) == BODY


async def test_a_body_larger_than_the_buffers_waits_for_the_client(client: Connection) -> None:
    client.request("/large")
    _, headers = await client.head()
    await asyncio.sleep(0.2)  # the server fills the buffers and has to wait
    assert await client.body(headers) == LARGE_CHUNK * LARGE_CHUNKS
    client.request("/json")
    _, headers = await client.head()
    assert await client.body(headers) == BODY


async def test_a_client_asking_to_close_gets_connection_close(client: Connection) -> None:
    client.request("/json", extra="connection: close\r\n")
    _, headers = await client.head()
    assert headers["connection"] == "close"
    assert await client.body(headers) == BODY
    assert await client.closed()


async def test_an_app_asking_to_close_closes_the_connection(client: Connection) -> None:
    client.request("/closing")
    _, headers = await client.head()
    assert headers["connection"] == "Keep-Alive, Close"  # not added a second time
    assert await client.body(headers) == b"ok"
    assert await client.closed()


async def test_a_client_leaving_mid_request_runs_the_registered_callback(
    app: Recorder, port: int
) -> None:
    connection = await Connection.open(port)
    connection.request("/wait")
    await asyncio.wait_for(app.waiting.wait(), 5)
    assert not app.disconnected.is_set()
    await connection.close()
    await asyncio.wait_for(app.disconnected.wait(), 5)
    assert not app.discarded_ran


async def test_a_callback_registered_after_the_client_left_runs_too(
    app: Recorder, port: int
) -> None:
    connection = await Connection.open(port)
    connection.request("/register-late")
    await asyncio.wait_for(app.waiting.wait(), 5)
    await connection.close()
    await asyncio.wait_for(app.disconnected.wait(), 5)


async def test_a_client_leaving_after_its_answer_runs_no_callback(
    app: Recorder, client: Connection
) -> None:
    client.request("/answer-and-stay-registered")
    _, headers = await client.head()
    assert await client.body(headers) == BODY
    await client.close()
    await asyncio.sleep(0.1)
    assert not app.disconnected.is_set()
