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


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            error = HeadersTooLargeError(
                f"The request headers are larger than the limit of {MAX_HEADER_BYTES} bytes."
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                (b"x-request-id", request_id.encode()),
            ]
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": error.encode()})
            return
        id_header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL.encode()})


def _request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is a sane token, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_REQUEST_ID.match(value):
            return bytes(value).decode()
    return f"{_PROCESS_PREFIX}{next(_SEQUENCE):012x}"
