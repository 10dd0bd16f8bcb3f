"""The proxied path's HTTP helpers: JSON responses and the bounded body read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message

from xrouter.errors import PayloadTooLargeError, RequestTimeoutError
from xrouter.gateway.http import (
    JSON_MEDIA_TYPE,
    EventStreamResponse,
    JSONBytesResponse,
    read_body,
)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, None),
        (200, {}),
        (200, {"x-ratelimit-limit-requests": "60", "X-Generation-Id": "chatcmpl-1"}),
        (429, {"retry-after": "2"}),
        (204, {"x-a": "b"}),
        (200, {"Content-Type": "application/problem+json"}),
        (200, {"content-length": "2", "x-a": "b"}),
    ],
)
def test_json_responses_carry_the_headers_starlette_would_send(
    status: int, headers: dict[str, str] | None
) -> None:
    body = b'{"a":1}'
    expected = Response(body, status, headers, JSON_MEDIA_TYPE)
    response = JSONBytesResponse(body, status, headers)
    assert response.raw_headers == expected.raw_headers
    assert response.status_code == status
    assert response.body == body
    assert response.headers.get("content-type") == expected.headers.get("content-type")


def request_with(messages: list[Message], headers: list[tuple[bytes, bytes]]) -> Request:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


JSON_HEADERS = [(b"content-type", b"application/json")]


async def test_a_body_in_parts_is_read_whole() -> None:
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    ]
    assert await read_body(request_with(parts, JSON_HEADERS), 100, 1.0) == b'{"a":1}'


async def test_a_body_that_stops_arriving_times_out_and_the_task_goes_on() -> None:
    parts: list[Message] = [{"type": "http.request", "body": b'{"a":', "more_body": True}]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeoutError):
        await read_body(request_with(parts, JSON_HEADERS), 100, 0.05)
    assert loop.time() - started < 1.0
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.1)  # no cancellation left over for later awaits


async def test_a_client_that_leaves_while_sending_the_body_is_a_disconnect() -> None:
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    with pytest.raises(ClientDisconnect):
        await read_body(request_with(parts, JSON_HEADERS), 100, 1.0)


async def test_the_first_of_repeated_body_headers_counts() -> None:
    parts: list[Message] = [{"type": "http.request", "body": b"{}"}]
    headers = [*JSON_HEADERS, (b"content-type", b"text/plain"), (b"content-length", b"2")]
    assert await read_body(request_with(parts, headers), 100, 1.0) == b"{}"
    too_long = [(b"content-length", b"101"), (b"content-length", b"2"), *JSON_HEADERS]
    with pytest.raises(PayloadTooLargeError):
        await read_body(request_with(parts, too_long), 100, 1.0)


async def no_events() -> AsyncIterator[bytes]:
    yield b""


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"cache-control": "no-cache", "X-Generation-Id": "chatcmpl-1"},
        {"Content-Type": "text/plain", "x-a": "b"},
    ],
)
def test_event_streams_carry_the_headers_starlette_would_send(
    headers: dict[str, str] | None,
) -> None:
    expected = StreamingResponse(no_events(), 200, headers, "text/event-stream")
    response = EventStreamResponse(no_events(), headers)
    assert response.raw_headers == expected.raw_headers
    assert response.status_code == 200
