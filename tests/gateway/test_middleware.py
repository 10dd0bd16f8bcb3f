"""The request context around every request: an ``x-request-id`` on every response and an
OpenAI-shaped 500 for an exception raised before the response started."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from xrouter.gateway.middleware import (
    REQUEST_ID_HEADER,
    RESPONSE_STARTED,
    RequestContextMiddleware,
)


def http_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": headers or []}


async def call(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await RequestContextMiddleware(app)(scope, receive, send)
    return sent


async def respond(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_a_control_plane_response_gets_the_request_id() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, [(b"content-type", b"application/json")])

    start, _ = await call(app, http_scope("/health", [(b"x-request-id", b"trace-1")]))
    assert start["headers"] == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"trace-1"),
    ]


async def test_the_gateway_gets_the_header_to_send_and_the_servers_own_send() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["send"] = send
        header = scope["state"][REQUEST_ID_HEADER]
        await respond(send, [header])

    start, _ = await call(app, http_scope("/v1/models", [(b"x-request-id", b"bad id")]))
    [(name, value)] = start["headers"]
    assert name == b"x-request-id"
    assert value.decode() not in ("", "bad id")
    assert seen["send"].__name__ == "send"  # not wrapped


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/keys"])
async def test_an_error_before_the_response_is_an_openai_500_with_the_id(path: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    start, body = await call(app, http_scope(path, [(b"x-request-id", b"trace-2")]))
    assert start["status"] == 500
    assert start["headers"] == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"trace-2"),
    ]
    assert json.loads(body["body"])["error"]["type"] == "api_error"
    assert "boom" not in body["body"].decode()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/keys"])
async def test_an_error_after_the_response_started_goes_on(path: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if path.startswith("/v1/"):
            scope["state"][RESPONSE_STARTED] = True  # as the gateway notes it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await call(app, http_scope(path))
