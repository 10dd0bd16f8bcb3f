"""Sends provider requests over the worker's one pooled aiohttp session.

Transport failures become ``UpstreamError``s here, the same way for every provider, so a
provider module only maps the error bodies its upstream sends.

aiohttp only connects within its timeout here. The wait for the answer's head, each wait for
more of its body and the whole exchange are bounded by deadlines on the loop's shared timer
(``deadlines.py``), and only where a wait happens: aiohttp's read and total timeouts arm and
cancel an event-loop timer per response and again per network read, a few per request.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time

import aiohttp
from aiohttp.http_exceptions import LineTooLong
from multidict import CIMultiDict

from xrouter.deadlines import SharedTimeout, loop_timer
from xrouter.errors import GatewayError, UpstreamError
from xrouter.providers.base import Provider, UpstreamRequest

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, between reads, for the whole exchange, and until the answer's
    first byte (the response head; for a stream, its first line). ``first_byte`` None: only
    ``read`` bounds the wait."""

    connect: float = 10.0
    read: float = 120.0
    total: float = 600.0
    first_byte: float | None = None

    @property
    def first_byte_or_read(self) -> float:
        """Seconds the answer's first byte may take."""
        return self.read if self.first_byte is None else self.first_byte

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for all of these numbers but ``first_byte`` (the session's default,
        for the calls that leave the timing to aiohttp, such as token exchanges)."""
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.read
        )

    def connect_timeout(self) -> aiohttp.ClientTimeout:
        """aiohttp's part of a proxied request's timeouts: connecting, built once per distinct
        value. The transport bounds the rest itself."""
        return _connect_timeout(self.connect)

    @classmethod
    def of(cls, timeout: aiohttp.ClientTimeout) -> Timeouts:
        """The timeouts an aiohttp session's default stands for (None: unbounded)."""
        default = cls()
        return cls(
            connect=timeout.sock_connect or timeout.connect or default.connect,
            read=timeout.sock_read or _UNBOUNDED,
            total=timeout.total or _UNBOUNDED,
        )


# "No timeout" as a deadline the loop's timer can hold: a year.
_UNBOUNDED = 365 * 86400.0


@functools.lru_cache(maxsize=64)  # a handful per deployment (routes, targets)
def _connect_timeout(connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None)


def create_session(timeouts: Timeouts, max_connections: int) -> aiohttp.ClientSession:
    """The worker's session: keep-alive pool shared by every provider, no cookie jar."""
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeouts.client_timeout(),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )


class UpstreamTransport:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        # For requests sent without timeouts of their own.
        self._timeouts = Timeouts.of(session.timeout)
        # Each provider's TLS option: fixed for its lifetime, asked for on every request.
        self._ssl: dict[Provider, ssl.SSLContext | bool] = {}

    async def send(
        self,
        provider: Provider,
        request: UpstreamRequest,
        timeouts: Timeouts | None = None,
        first_byte_at: float | None = None,
    ) -> bytes:
        """Send a request and return the body of a 2xx answer; anything else raises.

        ``timeouts`` replace the session's for this request (a route's or target's own);
        ``first_byte_at`` (loop time) replaces the deadline their ``first_byte`` sets."""
        exchange = await self._exchange(provider, request, timeouts, first_byte_at)
        try:
            with _TransportFailures(provider.name):
                return await _read_limited(exchange, MAX_RESPONSE_BYTES, provider)
        finally:
            exchange.response.release()

    async def stream_line_batches(
        self,
        provider: Provider,
        request: UpstreamRequest,
        timeouts: Timeouts | None = None,
        first_byte_at: float | None = None,
    ) -> AsyncGenerator[list[bytes], None]:
        """Send a request and yield the lines of a 2xx streamed answer as they arrive, without
        their line endings: the lines of one network read together, so that what arrived
        together can leave together. Blank lines (the separators between server-sent events)
        are left out: no decoder reads them; no batch is empty."""
        exchange = await self._exchange(provider, request, timeouts, first_byte_at)
        response = exchange.response
        try:
            with _TransportFailures(provider.name):
                # Lines are split here from whatever has arrived, one wait for all the lines of
                # a network read instead of one per line; as long a line as aiohttp allows.
                splitter = _LineSplitter(response.content.get_read_buffer_limits()[1])
                # The first line is due by the first-byte deadline, like the head.
                lines = await _first_lines(exchange, splitter)
                if batch := [line for line in lines if line]:
                    yield batch
                while chunk := await exchange.next_chunk():
                    if batch := [line for line in splitter.feed(chunk) if line]:
                        yield batch
                if last := splitter.rest():
                    yield [last]
        finally:
            # A stream left half-read (client gone, fallback) does not go back to the pool:
            # release() closes a connection whose answer has not ended.
            response.release()

    async def _exchange(
        self,
        provider: Provider,
        request: UpstreamRequest,
        timeouts: Timeouts | None,
        first_byte_at: float | None,
    ) -> _Exchange:
        """The open 2xx response to ``request``, for the caller to release. A refused
        credential is renewed and tried once more; failures below HTTP become
        ``UpstreamError``s."""
        session = self._session
        if timeouts is None:
            timeouts = self._timeouts
        timer = loop_timer()
        now = timer.now()
        ends_at = now + timeouts.total
        if first_byte_at is None and timeouts.first_byte is not None:
            first_byte_at = now + timeouts.first_byte
        # The head is due within the read timeout, or by the first-byte deadline if sooner.
        head_at = min(now + timeouts.read, ends_at)
        if first_byte_at is not None:
            head_at = min(head_at, first_byte_at)
        timeout = timeouts.connect_timeout()
        ssl_option = self._ssl.get(provider)
        if ssl_option is None:
            ssl_option = self._ssl[provider] = _ssl_option(provider)
        with _TransportFailures(provider.name):
            for attempt in (1, 2):
                # aiohttp takes a multidict as it is; a dict it would copy into one first.
                headers = CIMultiDict(request.headers)
                headers.update(await provider.auth_headers())
                sending = session.request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers=headers,
                    ssl=ssl_option,
                    timeout=timeout,
                )
                # The first-byte clock covers sending and the wait for the response head.
                with timer.deadline_at(head_at):
                    response = await sending
                exchange = _Exchange(response, timer, timeouts.read, ends_at, first_byte_at)
                if response.status < 300:
                    return exchange
                try:
                    if attempt == 1 and response.status in provider.reauthenticate_on:
                        await provider.invalidate_credentials()
                        continue
                    raise await _error_from(provider, exchange)
                finally:
                    response.release()
        raise AssertionError("unreachable: the second attempt returns or raises")


class _Exchange:
    """A response and its request's deadlines: ``read`` seconds for each wait for more of the
    body, the whole exchange by ``ends_at``, the first byte (for a stream, its first line) by
    ``first_byte_at`` (loop time; None: only the read timeout)."""

    __slots__ = ("ends_at", "first_byte_at", "read", "response", "timer")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        timer: SharedTimeout,
        read: float,
        ends_at: float,
        first_byte_at: float | None,
    ) -> None:
        self.response = response
        self.timer = timer
        self.read = read
        self.ends_at = ends_at
        self.first_byte_at = first_byte_at

    async def next_chunk(self, not_after: float | None = None) -> bytes:
        """What has arrived of the body since the last call, waiting for it if nothing has:
        for the read timeout at most, and not after ``not_after``; b"" at its end."""
        content = self.response.content
        chunk = content.read_nowait()
        if chunk or content.at_eof():
            return chunk  # no wait, no deadline: a small answer arrives with its head
        deadline = self.read_deadline()
        if not_after is not None and not_after < deadline:
            deadline = not_after
        with self.timer.deadline_at(deadline):
            return await content.readany()

    def read_deadline(self) -> float:
        """When a wait for the body starting now times out."""
        return min(self.timer.now() + self.read, self.ends_at)


class _TransportFailures:
    """Turns a failure below HTTP inside the block into an ``UpstreamError``; gateway errors
    and cancellations pass through. A class, not a generator: it runs on every request."""

    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> None:
        if isinstance(error, Exception) and not isinstance(error, GatewayError):
            raise transport_error(self.provider, error) from error


class _LineSplitter:
    """Cuts a byte stream into lines, each without its line ending (LF or CRLF). A line
    longer than ``longest`` raises ``LineTooLong``, as aiohttp's ``readline`` does."""

    __slots__ = ("_longest", "_pending")

    def __init__(self, longest: int) -> None:
        self._longest = longest
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes; its unfinished last line waits for the next one."""
        if self._pending:
            chunk = self._pending + chunk
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        longest = self._longest
        # With its ending, a whole line of ``longest`` bytes is already one too many.
        if len(chunk) > longest and (
            len(self._pending) > longest or any(len(line) >= longest for line in lines)
        ):
            raise LineTooLong(chunk[:100] + b"...", longest)
        if b"\r" in chunk:
            return [line.rstrip(b"\r") for line in lines]
        return lines

    def rest(self) -> bytes:
        """The last line, when the stream ended without a line ending."""
        return self._pending.rstrip(b"\r")


async def _first_lines(exchange: _Exchange, splitter: _LineSplitter) -> list[bytes]:
    """Reads until at least one whole line has arrived (none: the stream ended first), by the
    exchange's first-byte deadline."""
    while chunk := await exchange.next_chunk(exchange.first_byte_at):
        if lines := splitter.feed(chunk):
            return lines
    return []


def _ssl_option(provider: Provider) -> ssl.SSLContext | bool:
    context = provider.ssl_context()
    if context is None:
        return True
    assert isinstance(context, ssl.SSLContext | bool)
    return context


async def _read_limited(exchange: _Exchange, limit: int, provider: Provider) -> bytes:
    response = exchange.response
    if response.content_length is not None and response.content_length > limit:
        raise UpstreamError(
            f"{provider.name} sent a response larger than {limit} bytes.",
            provider=provider.name,
            code="upstream_response_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    # Whatever has arrived at each wait: a small answer is read in one call.
    while chunk := await exchange.next_chunk():
        size += len(chunk)
        if size > limit:
            raise UpstreamError(
                f"{provider.name} sent a response larger than {limit} bytes.",
                provider=provider.name,
                code="upstream_response_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _error_from(provider: Provider, exchange: _Exchange) -> UpstreamError:
    response = exchange.response
    with exchange.timer.deadline_at(exchange.read_deadline()):
        body = await response.content.read(MAX_ERROR_BODY_BYTES)
    return provider.error(
        response.status, body, parse_retry_after(response.headers.get("retry-after"))
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def transport_error(provider: str, error: BaseException) -> UpstreamError:
    """Describe a failure below HTTP without leaking addresses or credentials."""
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(
            f"{provider} did not answer in time.",
            provider=provider,
            status=504,
            retryable=True,
            code="upstream_timeout",
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamError(
            f"Could not connect to {provider}.",
            provider=provider,
            status=502,
            retryable=True,
            code="upstream_unreachable",
        )
    if isinstance(error, LineTooLong):
        # A streamed line beyond the reader's buffer: no event of a real stream is that long.
        return UpstreamError(
            f"{provider} sent a stream line longer than the gateway accepts.",
            provider=provider,
            status=502,
            code="upstream_response_too_large",
        )
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamError(
            f"{provider} closed the connection before the answer was complete.",
            provider=provider,
            status=502,
            retryable=True,
            code="upstream_disconnected",
        )
    return UpstreamError(
        f"The request to {provider} failed ({type(error).__name__}).",
        provider=provider,
        status=502,
        retryable=True,
        code="upstream_error",
    )
