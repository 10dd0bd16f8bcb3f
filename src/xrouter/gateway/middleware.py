"""ASGI middleware around the whole app: a request id on every response, and a last line of
defence that turns an unexpected exception into an OpenAI-shaped 500 without a stack trace."""

from __future__ import annotations

import itertools
import logging
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xrouter.errors import GatewayError

log = logging.getLogger(__name__)
_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Random per process, then a counter: unique across instances without a syscall per request.
_PROCESS_PREFIX = os.urandom(10).hex()
_SEQUENCE = itertools.count(1)
_INTERNAL = GatewayError("The gateway failed to process the request; it has been logged.")
# The HTTP parser accepts headers of any size; nothing legitimate comes near this (nginx's
# default is 8 KiB per line), and a request beyond it is refused before anything reads it.
MAX_HEADER_BYTES = 64 * 1024


class HeadersTooLargeError(GatewayError):
    status = 431
    error_type = "invalid_request_error"
    default_code = "headers_too_large"


# Scope state keys. The ``/v1`` app sends its responses with the request's ``x-request-id``
# header itself (``REQUEST_ID_HEADER``), and notes when it starts sending one
# (``RESPONSE_STARTED``): wrapping ``send`` for every request would cost a call per message,
# one per streamed chunk.
REQUEST_ID_HEADER = "request_id_header"
RESPONSE_STARTED = "response_started"


def is_gateway_path(path: str) -> bool:
    """Whether ``path`` is the ``/v1`` app's."""
    return path == "/v1" or path.startswith("/v1/")


class RequestContextMiddleware:
    """Gives every HTTP request its id (``state["request_id"]``) and every response its
    ``x-request-id`` header: the ``/v1`` app's from ``state[REQUEST_ID_HEADER]``, the rest
    through a wrapped ``send``. Refuses oversized headers with a 431, and answers an exception
    raised before the response started with a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        if sum(map(len, itertools.chain.from_iterable(scope["headers"]))) > MAX_HEADER_BYTES:
            error = HeadersTooLargeError(
                f"The request headers are larger than the limit of {MAX_HEADER_BYTES} bytes."
            )
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"), id_header]
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": error.encode()})
            return
        if is_gateway_path(scope["path"]):
            state[REQUEST_ID_HEADER] = id_header
            app_send = send
        else:
            app_send = _sending_id(send, id_header, state)
        try:
            await self.app(scope, receive, app_send)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if state.get(RESPONSE_STARTED):
                raise
            headers = [(b"content-type", b"application/json"), id_header]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": _INTERNAL.encode()})


def _sending_id(send: Send, id_header: tuple[bytes, bytes], state: dict[str, object]) -> Send:
    """``send`` adding ``id_header`` to the response's head and noting it in ``state``."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            state[RESPONSE_STARTED] = True
            message["headers"] = [*message.get("headers", ()), id_header]
        await send(message)

    return send_with_id


def _request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is a sane token, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_REQUEST_ID.match(value):
            return bytes(value).decode()
    return f"{_PROCESS_PREFIX}{next(_SEQUENCE):012x}"
