"""Runs a plan: attempts at its targets in order, with retries, fallbacks and circuit breaking.

For each target: build its upstream request (a provider that cannot honour the request refuses
here, and the next target is tried); take the breaker's permission; attempt; on a retryable
failure retry the same target after a backoff while its ``retries`` and the deadline allow;
then fall back to the next target. A client error ends the request at once. Streams are opened
up to their first decoded delta before anything is sent to the client, so a stream falls back
exactly as a JSON request does; what happens after that is ``ChunkStream``'s.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec
from starlette.types import Receive, Scope

from xrouter.errors import GatewayError, InvalidRequestError, UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest, EmbeddingsRequest
from xrouter.providers.base import (
    ChatReply,
    EmbeddingsReply,
    StreamDecoder,
    StreamDelta,
    UpstreamRequest,
)
from xrouter.providers.transport import UpstreamTransport
from xrouter.routing.breaker import BreakerBoard
from xrouter.routing.disconnect import unless_disconnected
from xrouter.routing.metrics import RoutingMetrics
from xrouter.routing.planner import CIRCUIT_OPEN, INCAPABLE, Plan, PlannedTarget, Skip, clause
from xrouter.routing.retry import (
    BREAKER_FAILURES,
    RETRY_SAME_TARGET,
    Backoff,
    FailureKind,
    classify,
)
from xrouter.routing.strategies import LatencyTracker

T = TypeVar("T")
# One attempt at a target: its answer, the first byte due by the given loop time.
_Call = Callable[[PlannedTarget, float], Awaitable[T]]
PROVIDER_HEADER = "x-xrouter-provider"
ATTEMPTS_HEADER = "x-xrouter-attempts"
# Yandex embeds one text per call: this many run at once for one client request.
EMBEDDING_CALLS_IN_PARALLEL = 8


@dataclass(frozen=True, slots=True)
class Attempt:
    """One line of the ``x-xrouter-attempts`` header."""

    target: str
    status: int | None = None
    error: str | None = None
    milliseconds: float | None = None
    skipped: str | None = None

    def render(self) -> str:
        if self.skipped is not None:
            return f"{self.target};skipped={self.skipped}"
        error = f";error={self.error}" if self.error else ""
        return f"{self.target};status={self.status}{error};ms={self.milliseconds:.0f}"


@dataclass(slots=True)
class Served(Generic[T]):
    """A successful outcome: what the target answered, which target, and every attempt."""

    value: T
    planned: PlannedTarget
    attempts: list[Attempt]

    def headers(self) -> dict[str, str]:
        return routing_headers(self.planned, self.attempts)


@dataclass(slots=True)
class OpenedStream:
    """A stream whose first deltas have arrived (with the rest of the lines that came with
    them); ``lines`` gives the next lines, a network read's at a time, and is None once the
    upstream has ended."""

    decoder: StreamDecoder
    first: list[StreamDelta]
    lines: AsyncIterator[list[bytes]] | None


@dataclass(slots=True)
class _Run:
    plan: Plan
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    refusals: list[tuple[str, InvalidRequestError]] = field(default_factory=list)
    last_error: GatewayError | None = None


def routing_headers(planned: PlannedTarget | None, attempts: list[Attempt]) -> dict[str, str]:
    headers = {ATTEMPTS_HEADER: ", ".join([attempt.render() for attempt in attempts])}
    if planned is not None:
        headers[PROVIDER_HEADER] = planned.target.provider
    return headers


class RouteExecutor:
    def __init__(
        self,
        transport: UpstreamTransport,
        breakers: BreakerBoard,
        latency: LatencyTracker,
        metrics: RoutingMetrics,
        backoff: Backoff,
        rng: random.Random | None = None,
    ) -> None:
        self._transport = transport
        self._breakers = breakers
        self._latency = latency
        self._metrics = metrics
        self._backoff = backoff
        self._rng = rng or random.Random()

    def prepare_chat(self, plan: Plan, chat: ChatCompletionRequest) -> None:
        """Translate the request for the plan's first target; targets whose provider refuses
        it (a parameter it cannot honour) leave the plan. Raises when none is left, so such a
        request is refused before it is charged to rate limits."""
        refusals: list[tuple[str, InvalidRequestError]] = []
        while plan.targets:
            planned = plan.targets[0]
            try:
                plan.prepared = planned.provider.chat_request(
                    _with_params(chat, planned), planned.target
                )
                plan.prepared_for = planned
                return
            except InvalidRequestError as error:
                refusals.append((planned.key, error))
                plan.targets.pop(0)
                plan.skipped.append(Skip(planned.key, INCAPABLE, error.message, error.param))
        raise refused(plan.requested, refusals)

    def chat(self, plan: Plan, chat: ChatCompletionRequest) -> Awaitable[Served[ChatReply]]:
        transport = self._transport

        async def call(planned: PlannedTarget, first_byte_at: float) -> ChatReply:
            provider, target = planned.provider, planned.target
            upstream = _upstream(plan, planned, chat)
            body = await transport.send(provider, upstream, planned.timeouts, first_byte_at)
            return provider.chat_reply(body, target)

        return self._run(plan, call)

    def open_stream(
        self, plan: Plan, chat: ChatCompletionRequest
    ) -> Awaitable[Served[OpenedStream]]:
        transport = self._transport

        async def call(planned: PlannedTarget, first_byte_at: float) -> OpenedStream:
            provider, target = planned.provider, planned.target
            upstream = _upstream(plan, planned, chat)
            decoder = provider.stream_decoder(target)
            lines = transport.stream_line_batches(
                provider, upstream, planned.timeouts, first_byte_at
            )
            try:
                first: list[StreamDelta] = []
                async for batch in lines:
                    for index, line in enumerate(batch):
                        first.extend(decoder.feed(line))
                        if first:
                            # What came after the first delta is the stream's, not routing's:
                            # a failure there is reported in the stream.
                            rest = batch[index + 1 :]
                            later = ResumedLines(rest, lines) if rest else lines
                            return OpenedStream(decoder, first, later)
                return OpenedStream(decoder, decoder.close(), None)
            except BaseException:
                await lines.aclose()
                raise

        return self._run(plan, call)

    def embeddings(
        self, plan: Plan, body: EmbeddingsRequest, texts: list[str]
    ) -> Awaitable[Served[EmbeddingsReply]]:
        limit = asyncio.Semaphore(EMBEDDING_CALLS_IN_PARALLEL)
        transport = self._transport

        async def call(planned: PlannedTarget, first_byte_at: float) -> EmbeddingsReply:
            provider, target, timeouts = planned.provider, planned.target, planned.timeouts

            # Each call's first byte is due as long after it starts as the attempt's was.
            loop = asyncio.get_running_loop()
            first_byte = first_byte_at - loop.time()

            async def send(request: UpstreamRequest) -> bytes:
                async with limit:
                    due = loop.time() + first_byte
                    return await transport.send(provider, request, timeouts, due)

            requests = provider.embeddings_requests(body, texts, target)
            bodies = await asyncio.gather(*(send(request) for request in requests))
            return provider.embeddings_reply(list(bodies), target)

        return self._run(plan, call)

    def watch(self, scope: Scope, receive: Receive, work: Awaitable[T]) -> Awaitable[T]:
        """``work`` (an attempt run), cancelled if the client disconnects first."""
        return unless_disconnected(scope, receive, work, self._metrics.client_disconnects.inc)

    def stream_failed(self, planned: PlannedTarget, error: GatewayError) -> None:
        """A stream broke after its first byte: count it against the target."""
        kind = classify(error)
        self._metrics.failures.labels(planned.key, kind).inc()
        if kind in BREAKER_FAILURES:
            self._breakers.record(planned.key, False)

    async def _run(self, plan: Plan, call: _Call[T]) -> Served[T]:
        """The targets in order, each with its retries, until one answers. One coroutine for
        the whole run: every frame between the handler and the upstream call is resumed again
        at each of the call's waits."""
        loop = asyncio.get_running_loop()
        run = _Run(plan, loop.time() + plan.deadline_seconds)
        if plan.skipped:
            self._planned_skips(run)
        breakers = self._breakers
        previous: PlannedTarget | None = None
        for planned in plan.targets:
            if previous is not None:
                self._metrics.fallbacks.labels(previous.key).inc()
            previous = planned
            retry = 0
            while True:
                now = loop.time()
                if now >= run.deadline:
                    break
                if not breakers.acquire(planned.key) and not plan.forced:
                    self._skipped(run, planned, CIRCUIT_OPEN)
                    break
                # The first byte is due before the request's deadline, whatever the target's.
                first_byte_at = min(now + planned.timeouts.first_byte_or_read, run.deadline)
                started = time.perf_counter()
                try:
                    value = await call(planned, first_byte_at)
                except UpstreamError as error:
                    wait = self._after_failure(run, planned, error, started, retry)
                    if wait is None:
                        break
                    await asyncio.sleep(wait)
                    retry += 1
                    continue
                except InvalidRequestError as error:
                    # The provider cannot translate the request: this target cannot honour it.
                    breakers.release(planned.key)
                    run.refusals.append((planned.key, error))
                    self._skipped(run, planned, INCAPABLE)
                    break
                except BaseException:
                    # Cancelled (the client left) or a bug: give the probe slot back unjudged.
                    breakers.release(planned.key)
                    raise
                self._succeeded(run, planned, started)
                return Served(value, planned, run.attempts)
        raise self._failure(run)

    def _planned_skips(self, run: _Run) -> None:
        for skip in run.plan.skipped:
            self._metrics.skipped.labels(skip.target, skip.reason).inc()
            run.attempts.append(Attempt(skip.target, skipped=skip.reason))

    def _skipped(self, run: _Run, planned: PlannedTarget, reason: str) -> None:
        self._metrics.skipped.labels(planned.key, reason).inc()
        run.attempts.append(Attempt(planned.key, skipped=reason))

    def _after_failure(
        self, run: _Run, planned: PlannedTarget, error: UpstreamError, started: float, retry: int
    ) -> float | None:
        """Seconds to wait before retrying the same target, or None to fall back to the next
        one; a client error ends the request here."""
        kind = self._failed(run, planned, error, started)
        if kind is FailureKind.CLIENT:
            raise self._final(run, planned, error) from None
        if kind not in RETRY_SAME_TARGET or retry >= planned.retries:
            return None
        loop = asyncio.get_running_loop()
        wait = self._backoff.wait(retry, error.retry_after, self._rng)
        if loop.time() + wait >= run.deadline:
            return None
        self._metrics.retries.labels(planned.key).inc()
        return wait

    def _succeeded(self, run: _Run, planned: PlannedTarget, started: float) -> None:
        seconds = time.perf_counter() - started
        self._breakers.record(planned.key, True)
        self._latency.observe(planned.key, seconds)
        self._metrics.succeeded(planned.key, seconds)
        run.attempts.append(Attempt(planned.key, 200, None, seconds * 1000))

    def _failed(
        self, run: _Run, planned: PlannedTarget, error: UpstreamError, started: float
    ) -> FailureKind:
        seconds = time.perf_counter() - started
        kind = classify(error)
        if kind in BREAKER_FAILURES:
            self._breakers.record(planned.key, False)
        elif kind is FailureKind.CLIENT:
            self._breakers.record(planned.key, True)  # it answered: healthy
        else:
            self._breakers.release(planned.key)
        metrics = self._metrics
        metrics.attempts.labels(planned.key, kind).inc()
        metrics.failures.labels(planned.key, kind).inc()
        metrics.attempt_seconds.labels(planned.key, kind).observe(seconds)
        run.attempts.append(Attempt(planned.key, error.status, error.code, seconds * 1000))
        run.last_error = error
        return kind

    def _final(self, run: _Run, planned: PlannedTarget | None, error: GatewayError) -> GatewayError:
        error.headers = {**error.headers, **routing_headers(planned, run.attempts)}
        return error

    def _failure(self, run: _Run) -> GatewayError:
        """The error when every target failed or refused: the last upstream failure, else the
        providers' refusals (one of them as is, or all of them together)."""
        if run.last_error is not None:
            return self._final(run, None, run.last_error)
        if run.refusals:
            return self._final(run, None, refused(run.plan.requested, run.refusals))
        error = UpstreamError(
            f"No target of '{run.plan.requested}' could be tried: every circuit is open or the "
            "deadline passed.",
            provider="xrouter",
            status=503,
            retryable=True,
            code="no_target_available",
        )
        return self._final(run, None, error)


def refused(requested: str, refusals: list[tuple[str, InvalidRequestError]]) -> GatewayError:
    """The error when every target's provider refused the request: the provider's own error
    when there was one target, else one naming each target's reason."""
    if len(refusals) == 1:
        return refusals[0][1]
    details = "; ".join(f"{target}: {clause(error.message)}" for target, error in refusals)
    return InvalidRequestError(
        f"No target of '{requested}' can serve this request: {details}.",
        param=refusals[0][1].param if refusals else None,
        code="no_capable_target",
    )


class ResumedLines:
    """``rest`` (the lines that came with a stream's first delta, after it), then the batches
    of ``lines``. Closing it closes ``lines`` even before anything was read (an async
    generator closed before its start would not run its ``finally``)."""

    __slots__ = ("_lines", "_rest")

    def __init__(self, rest: list[bytes], lines: AsyncGenerator[list[bytes], None]) -> None:
        self._rest: list[bytes] | None = rest
        self._lines = lines

    def __aiter__(self) -> ResumedLines:
        return self

    async def __anext__(self) -> list[bytes]:
        rest, self._rest = self._rest, None
        if rest is not None:
            return rest
        return await anext(self._lines)

    async def aclose(self) -> None:
        await self._lines.aclose()


def _upstream(plan: Plan, planned: PlannedTarget, chat: ChatCompletionRequest) -> UpstreamRequest:
    """The request for ``planned``: translated already if it is the one prepared."""
    if plan.prepared is not None and planned is plan.prepared_for:
        return plan.prepared
    return planned.provider.chat_request(_with_params(chat, planned), planned.target)


def _with_params(chat: ChatCompletionRequest, planned: PlannedTarget) -> ChatCompletionRequest:
    if not planned.params:
        return chat
    return msgspec.structs.replace(chat, **planned.params)
