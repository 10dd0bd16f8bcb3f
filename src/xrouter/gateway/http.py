"""Small HTTP helpers of the proxied path: bounded body reading, JSON decoding, responses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from xrouter.deadlines import loop_timer
from xrouter.errors import (
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from xrouter.gateway.wire import WIRE_ENCODER
from xrouter.routing.disconnect import ClientDisconnectedError, unless_disconnected

T = TypeVar("T")
JSON_MEDIA_TYPE = "application/json"
_PATH_SEGMENT = re.compile(r"^\$\.?")
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``, and with
    408 when it has not fully arrived within ``timeout`` seconds. Read from ``receive`` as
    ``Request.stream`` reads it, without its generator (nothing reads the body again)."""
    headers = request_headers(request.scope)
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    content_type = headers.get(b"content-type")
    if content_type is not None and b"json" not in content_type.split(b";", 1)[0].lower():
        shown = content_type.decode("latin-1")[:80]
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, not '{shown}'.")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    try:
        with loop_timer().deadline(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnect()
                    continue
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeoutError(
            f"The request body did not arrive within {timeout:g} seconds."
        ) from None
    return b"".join(chunks)


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by name, the first of a repeated one winning as in Starlette's
    ``Headers.get``: built in C, instead of a scan in Python for every lookup."""
    return dict(reversed(scope["headers"]))


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode and validate a body, turning msgspec's complaints into OpenAI-shaped 400s."""
    if not body:
        raise InvalidRequestError(
            "The request body is empty; send a JSON object.", code="invalid_json"
        )
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        message, param = _describe_validation(str(error))
        raise InvalidRequestError(message, param=param, code="invalid_value") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec checks UTF-8 in strings it decodes to ``str`` only as it builds them.
        raise InvalidRequestError(
            "We could not parse the JSON body of your request; it must be valid UTF-8 JSON.",
            code="invalid_json",
        ) from None
    except RecursionError:
        # Thousands of nested arrays or objects, even in a field the gateway ignores.
        raise InvalidRequestError(
            "The JSON body of your request is nested too deeply.", code="invalid_json"
        ) from None


def _describe_validation(text: str) -> tuple[str, str | None]:
    """``'Expected `int` - at `$.n`'`` -> (message, ``'n'``) with the field path as ``param``."""
    message, _, where = text.partition(" - at `")
    path = _PATH_SEGMENT.sub("", where.rstrip("`")) or None
    missing = _MISSING_FIELD.match(message)
    if missing:
        field = missing[1]
        param = f"{path}.{field}" if path else field
        return f"Missing required parameter: '{param}'.", param
    if path is None:
        return f"Invalid request body: {message}.", None
    return f"Invalid value for '{path}': {message}.", path


class JSONBytesResponse(Response):
    """A Starlette ``Response`` of JSON already encoded, its header list built in one pass:
    every proxied answer is one, and ``Response.__init__`` does generic work (rendering,
    scanning the headers twice for ``content-length`` and ``content-type``)."""

    media_type = JSON_MEDIA_TYPE

    def __init__(
        self, body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        raw = _encoded(headers) if headers else []
        if raw is None:
            # Rare: the caller set one of them; Starlette's rules decide which is sent.
            self.init_headers(headers)
            return
        if status_code >= 200 and status_code not in (204, 304):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append(_JSON_CONTENT_TYPE)
        self.raw_headers = raw


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]] | None:
    """``headers`` as Starlette encodes them, or None when one of them is a header the
    response sets itself (``content-length``, ``content-type``)."""
    names = [name.lower().encode("latin-1") for name in headers]
    if not _OWN_HEADERS.isdisjoint(names):
        return None
    return list(zip(names, [value.encode("latin-1") for value in headers.values()], strict=True))


_JSON_CONTENT_TYPE = (b"content-type", JSON_MEDIA_TYPE.encode("latin-1"))
_OWN_HEADERS = frozenset((b"content-length", b"content-type"))


def json_response(
    payload: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONBytesResponse(WIRE_ENCODER.encode(payload), status, headers)


def error_response(error: GatewayError) -> Response:
    return JSONBytesResponse(error.encode(), error.status, error.headers)


class EventStreamResponse(StreamingResponse):
    """Server-sent events, sent from the request's own task (Starlette's ``StreamingResponse``
    runs a task group with a second task for every stream). The server's disconnect notice
    cancels the stream when the client leaves; the cancellation runs through the events'
    iterator, which closes the upstream. Its header list is built in one pass, as
    ``JSONBytesResponse``'s is."""

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.body_iterator = content
        self.status_code = 200
        self.background = None
        raw = _encoded(headers) if headers else []
        if raw is None:
            self.init_headers(headers)
        else:
            raw.append(_EVENT_STREAM_CONTENT_TYPE)
            self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await unless_disconnected(scope, receive, self.stream_response(send))
        except ClientDisconnectedError:
            return
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        # Starlette's, without its check for text items: the events are bytes.
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# What Starlette sends for a text media type: with its charset.
_EVENT_STREAM_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
