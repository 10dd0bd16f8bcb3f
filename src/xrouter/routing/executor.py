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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
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
from xrouter.providers.transport import Timeouts, UpstreamTransport
from xrouter.routing.breaker import BreakerBoard
from xrouter.routing.disconnect import ClientDisconnectedError, unless_disconnected
from xrouter.routing.metrics import RoutingMetrics
from xrouter.routing.planner import INCAPABLE, Plan, PlannedTarget, Skip, clause
from xrouter.routing.retry import (
    BREAKER_FAILURES,
    RETRY_SAME_TARGET,
    Backoff,
    FailureKind,
    classify,
)
from xrouter.routing.strategies import LatencyTracker

T = TypeVar("T")
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
        parts = [self.target, f"status={self.status}"]
        if self.error:
            parts.append(f"error={self.error}")
        parts.append(f"ms={self.milliseconds:.0f}")
        return ";".join(parts)


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
    """A stream whose first deltas have arrived; ``lines`` is None once the upstream ended."""

    decoder: StreamDecoder
    first: list[StreamDelta]
    lines: AsyncIterator[bytes] | None


@dataclass(slots=True)
class _Run:
    plan: Plan
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    refusals: list[tuple[str, InvalidRequestError]] = field(default_factory=list)
    last_error: GatewayError | None = None


def routing_headers(planned: PlannedTarget | None, attempts: list[Attempt]) -> dict[str, str]:
    headers = {ATTEMPTS_HEADER: ", ".join(attempt.render() for attempt in attempts)}
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
                planned.prepared = planned.provider.chat_request(
                    _with_params(chat, planned), planned.target
                )
                return
            except InvalidRequestError as error:
                refusals.append((planned.key, error))
                plan.targets.pop(0)
                plan.skipped.append(Skip(planned.key, INCAPABLE, error.message, error.param))
        raise refused(plan.requested, refusals)

    async def chat(self, plan: Plan, chat: ChatCompletionRequest) -> Served[ChatReply]:
        async def call(planned: PlannedTarget, timeouts: Timeouts) -> ChatReply:
            provider, target = planned.provider, planned.target
            upstream = planned.prepared or provider.chat_request(
                _with_params(chat, planned), target
            )
            body = await self._transport.send(provider, upstream, timeouts)
            return provider.chat_reply(body, target)

        return await self._run(plan, call)

    async def open_stream(self, plan: Plan, chat: ChatCompletionRequest) -> Served[OpenedStream]:
        async def call(planned: PlannedTarget, timeouts: Timeouts) -> OpenedStream:
            provider, target = planned.provider, planned.target
            upstream = planned.prepared or provider.chat_request(
                _with_params(chat, planned), target
            )
            decoder = provider.stream_decoder(target)
            lines = self._transport.stream_lines(provider, upstream, timeouts)
            try:
                first: list[StreamDelta] = []
                async for line in lines:
                    first.extend(decoder.feed(line))
                    if first:
                        return OpenedStream(decoder, first, lines)
                return OpenedStream(decoder, decoder.close(), None)
            except BaseException:
                await lines.aclose()
                raise

        return await self._run(plan, call)

    async def embeddings(
        self, plan: Plan, body: EmbeddingsRequest, texts: list[str]
    ) -> Served[EmbeddingsReply]:
        limit = asyncio.Semaphore(EMBEDDING_CALLS_IN_PARALLEL)

        async def call(planned: PlannedTarget, timeouts: Timeouts) -> EmbeddingsReply:
            provider, target = planned.provider, planned.target

            async def send(request: UpstreamRequest) -> bytes:
                async with limit:
                    return await self._transport.send(provider, request, timeouts)

            requests = provider.embeddings_requests(body, texts, target)
            bodies = await asyncio.gather(*(send(request) for request in requests))
            return provider.embeddings_reply(list(bodies), target)

        return await self._run(plan, call)

    async def watch(self, scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
        """``work`` (an attempt run), cancelled if the client disconnects first."""
        try:
            return await unless_disconnected(scope, receive, work)
        except ClientDisconnectedError:
            self._metrics.client_disconnects.inc()
            raise

    def stream_failed(self, planned: PlannedTarget, error: GatewayError) -> None:
        """A stream broke after its first byte: count it against the target."""
        kind = classify(error)
        self._metrics.failures.labels(planned.key, kind).inc()
        if kind in BREAKER_FAILURES:
            self._breakers.record(planned.key, False)

    async def _run(
        self, plan: Plan, call: Callable[[PlannedTarget, Timeouts], Awaitable[T]]
    ) -> Served[T]:
        loop = asyncio.get_running_loop()
        run = _Run(plan, loop.time() + plan.deadline_seconds)
        for skip in plan.skipped:
            self._metrics.skipped.labels(skip.target, skip.reason).inc()
            run.attempts.append(Attempt(skip.target, skipped=skip.reason))
        for index, planned in enumerate(plan.targets):
            if index > 0:
                self._metrics.fallbacks.labels(plan.targets[index - 1].key).inc()
            value = await self._try_target(run, planned, call)
            if value is not None:
                return Served(value[0], planned, run.attempts)
        raise self._failure(run)

    async def _try_target(
        self,
        run: _Run,
        planned: PlannedTarget,
        call: Callable[[PlannedTarget, Timeouts], Awaitable[T]],
    ) -> tuple[T] | None:
        """Attempts at one target, with its retries; the value, or None to fall back."""
        loop = asyncio.get_running_loop()
        retry = 0
        while True:
            remaining = run.deadline - loop.time()
            if remaining <= 0:
                return None
            if not self._breakers.acquire(planned.key) and not run.plan.forced:
                self._metrics.skipped.labels(planned.key, "circuit_open").inc()
                run.attempts.append(Attempt(planned.key, skipped="circuit_open"))
                return None
            started = time.perf_counter()
            try:
                value = await call(planned, _bounded(planned.timeouts, remaining))
            except UpstreamError as error:
                kind = self._failed(run, planned, error, started)
                if kind is FailureKind.CLIENT:
                    raise self._final(run, planned, error) from None
                if kind not in RETRY_SAME_TARGET or retry >= planned.retries:
                    return None
                wait = self._backoff.wait(retry, error.retry_after, self._rng)
                if loop.time() + wait >= run.deadline:
                    return None
                self._metrics.retries.labels(planned.key).inc()
                await asyncio.sleep(wait)
                retry += 1
                continue
            except InvalidRequestError as error:
                # The provider cannot translate the request: this target cannot honour it.
                self._breakers.release(planned.key)
                run.refusals.append((planned.key, error))
                run.attempts.append(Attempt(planned.key, skipped=INCAPABLE))
                self._metrics.skipped.labels(planned.key, INCAPABLE).inc()
                return None
            except BaseException:
                # Cancelled (the client left) or a bug: give the probe slot back unjudged.
                self._breakers.release(planned.key)
                raise
            self._succeeded(run, planned, started)
            return (value,)

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


def _bounded(timeouts: Timeouts, remaining: float) -> Timeouts:
    """The target's timeouts, the first byte due before the request's deadline."""
    first_byte = timeouts.first_byte if timeouts.first_byte is not None else timeouts.read
    return replace(timeouts, first_byte=min(first_byte, remaining))


def _upstream(planned: PlannedTarget, chat: ChatCompletionRequest) -> UpstreamRequest:
    if planned.prepared is not None:
        return planned.prepared
    return planned.provider.chat_request(_with_params(chat, planned), planned.target)


def _with_params(chat: ChatCompletionRequest, planned: PlannedTarget) -> ChatCompletionRequest:
    if not planned.params:
        return chat
    return msgspec.structs.replace(chat, **planned.params)
