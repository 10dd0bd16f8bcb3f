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


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
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
