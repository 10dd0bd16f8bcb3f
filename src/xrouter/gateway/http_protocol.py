"""uvicorn's httptools protocol with a cheaper response and a disconnect notice.

Three per-request costs of uvicorn 0.54's ``RequestResponseCycle.send`` and of watching for a
disconnect are avoided, with uvicorn's behaviour otherwise unchanged:

- the response head is checked against uvicorn's rules (its two single-character patterns)
  once over all header names and once over all values, not with two regex searches per
  header; uvicorn's own patterns name the first bad header, with uvicorn's error;
- the head goes out in the same ``transport.write`` as the first body message (one syscall and
  one TCP segment for a small answer); a head whose body is not sent in the same event-loop
  step is flushed on the next one, so a slow first stream chunk does not hold it back;
- the scope's ``xrouter.disconnect`` extension lets the app register a callback run when the
  client's connection is lost before the response is complete, instead of a task per request
  awaiting ``receive()`` for ``http.disconnect``.

Select it with uvicorn's ``http=`` setting: ``"xrouter.gateway.http_protocol:GatewayHttpProtocol"``.
"""

from __future__ import annotations

import asyncio
import types
from asyncio import Handle
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from xrouter.routing.disconnect import DISCONNECT_EXTENSION

DisconnectCallback = Callable[[], object]

# The bytes uvicorn's patterns allow in a header name and in a value. Deleting them from all
# names (values) at once leaves nothing unless one of them holds a byte uvicorn refuses: one
# C loop over the head instead of a regex search per header.
_NAME_BYTES = bytes(byte for byte in range(256) if not HEADER_RE.search(bytes((byte,))))
_VALUE_BYTES = bytes(byte for byte in range(256) if not HEADER_VALUE_RE.search(bytes((byte,))))


class GatewayResponseCycle(RequestResponseCycle):
    """One request's response, written as uvicorn writes it, with fewer checks and writes."""

    # The head waiting for the first body message, and its flush on the next loop step.
    _head: bytes | None = None
    _flush: Handle | None = None

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self._start(message)
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
                )
            self._body(message)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, after response already "
                "completed."
            )

    def _start(self, message: Mapping[str, Any]) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code: int = message["status"]
        headers: list[tuple[bytes, bytes]] = [*self.default_headers, *message.get("headers", ())]
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status_code,
            )
        pairs: tuple[tuple[bytes, ...], ...] = tuple(zip(*headers, strict=True))
        names, values = pairs if pairs else ((), ())
        joined = b"".join(names)
        if joined.translate(None, _NAME_BYTES) or b"".join(values).translate(None, _VALUE_BYTES):
            _reject(headers)
        # Usually lowercase already (Starlette's responses, uvicorn's own headers).
        lowered = names if joined.islower() else [name.lower() for name in names]
        has_connection_close = False
        if b"transfer-encoding" in lowered or b"connection" in lowered:
            has_connection_close = self._read_framing(lowered, values)
        elif b"content-length" in lowered:
            self.expected_content_length = int(values[lowered.index(b"content-length")].decode())
            self.chunked_encoding = False
        content = [STATUS_LINE[status_code]]
        if lowered:
            content += (b"\r\n".join(map(b": ".join, zip(lowered, values, strict=True))), b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status_code not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self._head = b"".join(content)
        self._flush = asyncio.get_running_loop().call_soon(self._flush_head)

    def _read_framing(self, names: Sequence[bytes], values: Sequence[bytes]) -> bool:
        """uvicorn's reading of content-length, transfer-encoding and connection, header by
        header (the first content-length counts; a chunked transfer-encoding overrides it);
        whether a connection header asks to close."""
        has_connection_close = False
        for name, value in zip(names, values, strict=True):
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                has_connection_close = True
        return has_connection_close

    def _flush_head(self) -> None:
        """The body did not follow in the same step: the head goes out alone, now."""
        head = self._head
        self._head = None
        self._flush = None
        if head is not None and not self.disconnected and not self.transport.is_closing():
            self.transport.write(head)

    def _body(self, message: Mapping[str, Any]) -> None:
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = b""
        elif self.chunked_encoding:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = body
        head = self._head
        if head is not None:
            self._head = None
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            data = head + data
        if data:
            self.transport.write(data)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


def _reject(headers: list[tuple[bytes, bytes]]) -> NoReturn:
    """Raise uvicorn's error for the first bad header, in uvicorn's order (name, then value)."""
    for name, value in headers:
        if HEADER_RE.search(name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
    raise AssertionError("no header is invalid")


def _building(cycle_class: type[RequestResponseCycle]) -> Callable[[HttpToolsProtocol], None]:
    """uvicorn's own ``on_headers_complete``, building a ``cycle_class`` for each request.

    The method names ``RequestResponseCycle`` from its module's globals; its code runs here
    with those globals and that one name bound to ``cycle_class``: uvicorn's request handling
    is kept as it is, with no copy of it and no change to uvicorn's module."""
    method = HttpToolsProtocol.on_headers_complete
    if "RequestResponseCycle" not in method.__code__.co_names:
        raise RuntimeError("uvicorn's on_headers_complete no longer builds its cycle by name")
    namespace = {**method.__globals__, "RequestResponseCycle": cycle_class}
    built = types.FunctionType(method.__code__, namespace, method.__name__, method.__defaults__)
    return cast(Callable[[HttpToolsProtocol], None], built)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol serving ``GatewayResponseCycle`` responses, with the
    ``xrouter.disconnect`` scope extension: ``{"add": add, "discard": discard}``, each taking a
    callback. A registered callback runs once if the connection is lost before the response is
    complete (on the next loop step if it is lost already), never after it is discarded."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lost = False
        self._disconnect_callbacks: list[DisconnectCallback] = []
        self._disconnect_extension: dict[object, object] = {
            "add": self._add_disconnect_callback,
            "discard": self._discard_disconnect_callback,
        }

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        self._lost = True
        if cycle is not None and not cycle.response_complete:
            for callback in list(self._disconnect_callbacks):
                callback()

    on_headers_complete = _building(GatewayResponseCycle)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT_EXTENSION: self._disconnect_extension}

    def _add_disconnect_callback(self, callback: DisconnectCallback) -> None:
        self._disconnect_callbacks.append(callback)
        if self._lost:
            self.loop.call_soon(self._run_if_registered, callback)

    def _discard_disconnect_callback(self, callback: DisconnectCallback) -> None:
        if callback in self._disconnect_callbacks:
            self._disconnect_callbacks.remove(callback)

    def _run_if_registered(self, callback: DisconnectCallback) -> None:
        if callback in self._disconnect_callbacks:
            callback()
