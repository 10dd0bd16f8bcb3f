"""The ``/v1`` endpoints. Each reads top to bottom: authenticate, parse, route, limit, call,
respond, record usage (which settles the rate-limit reservation). Nothing here touches the
database: keys and models come from memory and usage is handed to a buffered recorder."""

from __future__ import annotations

import base64
import time
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from xrouter.auth.gateway_auth import authenticate
from xrouter.errors import GatewayError, InvalidRequestError, ModelNotFoundError
from xrouter.gateway.http import (
    EventStreamResponse,
    decode_json,
    error_response,
    json_response,
    read_body,
)
from xrouter.gateway.streaming import ChunkStream, StreamOutcome
from xrouter.gateway.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
    Message,
    ModelList,
    Usage,
)
from xrouter.keys.cache import ActiveKey
from xrouter.keys.policy import id_allowed
from xrouter.limits.limiter import Admission
from xrouter.observability.access_log import MODEL_PATH_PREFIX, REPORT_WHEN_SENT
from xrouter.observability.content_log import StreamTranscript, log_exchange
from xrouter.providers.base import ModelTarget, StreamDelta
from xrouter.routing.planner import Plan
from xrouter.runtime import Runtime
from xrouter.usage.recorder import UsageEvent

Handler = Callable[[Request], Awaitable[Response]]
_CHAT = msgspec.json.Decoder(ChatCompletionRequest)
_EMBEDDINGS = msgspec.json.Decoder(EmbeddingsRequest)


class GatewayHandlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def chat_completions(self, request: Request) -> Response:
        result = await self.run_chat(request, _decode_chat)
        if isinstance(result, ChatStream):
            return result.response(result.stream.events(result.first_line, result.lines))
        return json_response(result.completion, headers=result.headers)

    async def run_chat(self, request: Request, parse: ChatParser) -> ChatResult | ChatStream:
        """The pipeline every chat-shaped API shares: authenticate, read and ``parse`` the body
        into a chat request, route, limit, call the provider, record usage. The caller renders
        the answer (or the started stream) in its own API's format."""
        started = time.perf_counter()
        runtime = self.runtime
        key = authenticate(request, runtime.keys, runtime.access_tokens)
        raw = await read_body(request, *body_limits(runtime))
        chat = parse(raw, key)
        # The plan: targets in the order to try them (routes, fallbacks, breakers); the primary
        # is translated already, so a request no target can take is refused before the limit.
        plan = runtime.routing.planner.plan_chat(chat, key)
        executor = runtime.routing.executor
        executor.prepare_chat(plan, chat)
        target = plan.primary.target
        runtime.key_policy.admit(key, target)
        limiter = runtime.limiter
        admission = await limiter.admit(key, target, limiter.policy.chat_tokens(chat, len(raw)))
        usage = _UsageContext(runtime, request, key, target, chat.stream, started, admission)
        if key.log_content:  # the owner opted in to having prompts and completions logged
            usage.messages = chat.messages
        if chat.stream:
            return await self._stream(request, plan, chat, usage)
        try:
            served = await executor.watch(request.scope, request.receive, executor.chat(plan, chat))
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise
        usage.target = served.planned.target
        usage.attempts = len(served.attempts)
        reply = served.value
        completion = ChatCompletion(
            id=usage.generation_id,
            created=int(time.time()),
            model=usage.target.public_id,
            choices=reply.choices,
            usage=reply.usage,
            system_fingerprint=reply.model_version,
        )
        usage.record(200, reply.usage, answer=reply.choices, report_when_sent=True)
        return ChatResult(completion, usage.request_id, usage.response_headers(served.headers()))

    async def _stream(
        self, request: Request, plan: Plan, chat: ChatCompletionRequest, usage: _UsageContext
    ) -> ChatStream:
        executor = self.runtime.routing.executor
        try:
            # Up to the first delta, a failing target can still be replaced by the next one,
            # and a request that fails everywhere still gets its own HTTP status.
            served = await executor.watch(
                request.scope, request.receive, executor.open_stream(plan, chat)
            )
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise
        usage.target = served.planned.target
        usage.attempts = len(served.attempts)
        opened = served.value

        def finish(outcome: StreamOutcome) -> None:
            status = outcome.error.status if outcome.error else 200
            if outcome.error is not None:
                executor.stream_failed(served.planned, outcome.error)
            usage.record(
                status,
                outcome.usage,
                error=outcome.error,
                first_token_at=outcome.first_token_at,
                answer=outcome.transcript,
            )

        stream = ChunkStream(
            usage.generation_id,
            usage.target.public_id,
            chat.include_usage_in_stream,
            opened.decoder,
            finish,
            StreamTranscript() if usage.messages is not None else None,
        )
        headers = usage.response_headers(served.headers())
        return ChatStream(stream, opened.first, opened.lines, usage.request_id, headers)

    async def models(self, request: Request) -> Response:
        key = authenticate(request, self.runtime.keys, self.runtime.access_tokens)
        cards = self.runtime.catalog.models()
        if key.allowed_models is not None:  # a key sees only the models it may use
            cards = [card for card in cards if id_allowed(key.allowed_models, card.id)]
        return json_response(ModelList(cards))

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{id}``: one item of ``/v1/models``. Ids hold ``/`` and ``:``, so the
        id is the whole rest of the (decoded) path."""
        key = authenticate(request, self.runtime.keys, self.runtime.access_tokens)
        model_id = request.scope["path"].removeprefix(MODEL_PATH_PREFIX)
        card = self.runtime.catalog.card(model_id)
        # A model the key may not use is as absent as in the list.
        if card is None or (
            key.allowed_models is not None and not id_allowed(key.allowed_models, model_id)
        ):
            raise ModelNotFoundError(model_id)
        return json_response(card)

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        runtime = self.runtime
        key = authenticate(request, runtime.keys, runtime.access_tokens)
        raw = await read_body(request, *body_limits(runtime))
        body = decode_json(raw, _EMBEDDINGS)
        plan = runtime.routing.planner.plan_embeddings(body.model, key)
        target = plan.primary.target
        runtime.key_policy.admit(key, target)
        texts = body.texts()
        if texts is None:
            raise InvalidRequestError(
                "Token arrays are not accepted as embedding input; send text.",
                param="input",
                code="unsupported_input",
            )
        limiter = runtime.limiter
        admission = await limiter.admit(key, target, limiter.policy.embedding_tokens(len(raw)))
        usage = _UsageContext(runtime, request, key, target, False, started, admission, "embd-")
        executor = runtime.routing.executor
        try:
            served = await executor.watch(
                request.scope, request.receive, executor.embeddings(plan, body, texts)
            )
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise
        usage.attempts = len(served.attempts)
        reply = served.value
        data = reply.data
        if body.encoding_format == "base64":
            data = [Embedding(item.index, _base64_floats(item.embedding)) for item in data]
        tokens = reply.prompt_tokens
        usage.record(200, Usage(tokens, 0, tokens), report_when_sent=True)
        return json_response(
            EmbeddingsResponse(data, target.public_id, EmbeddingsUsage(tokens, tokens)),
            headers=usage.response_headers(served.headers()),
        )


def body_limits(runtime: Runtime) -> tuple[int, float]:
    """The size and time limits of a request body, as ``read_body`` takes them."""
    settings = runtime.settings
    return settings.max_request_bytes, settings.request_body_timeout_seconds


def _decode_chat(raw: bytes, key: ActiveKey) -> ChatCompletionRequest:
    return decode_json(raw, _CHAT)


@dataclass(slots=True)
class ChatResult:
    """A finished chat answer, with the headers its response carries (rate limits)."""

    completion: ChatCompletion
    request_id: str
    headers: dict[str, str]


@dataclass(slots=True)
class ChatStream:
    """A streamed chat answer whose upstream has started: relay ``stream.events`` as OpenAI
    SSE, or translate ``stream.chunks`` to another API's events."""

    stream: ChunkStream
    first_line: bytes | list[StreamDelta] | None
    lines: AsyncIterator[list[bytes]] | None
    request_id: str
    headers: dict[str, str]

    def chunks(self) -> AsyncGenerator[ChatCompletionChunk | GatewayError, None]:
        return self.stream.chunks(self.first_line, self.lines)

    def response(self, events: AsyncIterator[bytes]) -> EventStreamResponse:
        """The server-sent-events response that sends ``events``."""
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **self.headers}
        return EventStreamResponse(events, headers=headers)


# Reads a request body into the chat request the pipeline runs (the key scopes stored state).
ChatParser = Callable[[bytes, ActiveKey], ChatCompletionRequest]


def _base64_floats(vector: list[float] | str) -> str:
    if isinstance(vector, str):
        return vector
    # OpenAI's base64 format: little-endian float32.
    packed = array("f", vector)
    return base64.b64encode(packed.tobytes()).decode("ascii")


class _UsageContext:
    """What one request needs to write its usage record when it ends."""

    __slots__ = (
        "admission",
        "attempts",
        "generation_id",
        "key",
        "messages",
        "request_id",
        "runtime",
        "started",
        "state",
        "stream",
        "target",
        "upstream_at",
    )

    def __init__(
        self,
        runtime: Runtime,
        request: Request,
        key: ActiveKey,
        target: ModelTarget,
        stream: bool,
        started: float,
        admission: Admission,
        id_prefix: str = "chatcmpl-",
    ) -> None:
        self.admission = admission
        # The response's id, its x-generation-id header and its usage record's id (for
        # GET /api/v1/generation?id=): unique even when clients reuse x-request-id values.
        self.generation_id = runtime.usage.new_id(id_prefix)
        self.runtime = runtime
        self.state: dict[str, Any] = request.scope.setdefault("state", {})
        self.request_id = str(self.state.get("request_id", ""))
        self.key = key
        self.target = target
        self.stream = stream
        self.started = started
        # Made right before the upstream call: what came before is the gateway's overhead.
        self.upstream_at = time.perf_counter()
        # Upstream attempts of a served request (None: failed, see the routing metrics).
        self.attempts: int | None = None
        # The prompt, kept only for a key that has its content logged.
        self.messages: list[Message] | None = None

    def response_headers(self, routing: dict[str, str] | None = None) -> dict[str, str]:
        """The rate-limit headers and ``x-generation-id``, then ``routing``'s, in one dict."""
        return {**self.admission.headers, "x-generation-id": self.generation_id, **(routing or {})}

    def record(
        self,
        status: int,
        usage: Usage | None,
        *,
        error: GatewayError | None = None,
        first_token_at: float | None = None,
        answer: list[Choice] | StreamTranscript | None = None,
        report_when_sent: bool = False,
    ) -> None:
        """Record the request's usage (journaled before the client has the answer, so a killed
        process loses none), then settle its rate limits, count it and log it: at once, or
        with ``report_when_sent`` once the answer is written (``REPORT_WHEN_SENT``)."""
        if error is not None:
            # The error is about to be rendered: it carries the rate-limit headers too.
            error.headers = {**self.response_headers(), **error.headers}
        now = time.perf_counter()
        cached = 0
        if usage is not None and not isinstance(usage.prompt_tokens_details, msgspec.UnsetType):
            cached = usage.prompt_tokens_details.cached_tokens
        event = UsageEvent(
            id=self.generation_id,
            request_id=self.request_id,
            key_id=self.key.id,
            user_id=self.key.owner,
            model=self.target.public_id,
            provider=self.target.provider,
            status_code=status,
            stream=self.stream,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            total_tokens=usage.total_tokens if usage else 0,
            cached_tokens=cached,
            latency_ms=(now - self.started) * 1000,
            ttft_ms=(first_token_at - self.started) * 1000 if first_token_at else None,
            error_code=error.code if error else None,
        )
        self.runtime.usage.record(event)
        # Settle the rate-limit reservation: real usage replaces the estimate; a request that
        # failed before the provider produced anything is refunded, so its retry is not
        # charged twice.
        refund = usage is None and error is not None and first_token_at is None
        report = _Report(self, event, usage, refund, now, first_token_at, answer)
        if report_when_sent:
            self.state[REPORT_WHEN_SENT] = report
        else:
            report()


@dataclass(slots=True)
class _Report:
    """What a finished request does after its usage is recorded: settle its rate-limit
    reservation, count it in the metrics and write its access-log line (and, for a key that has
    its content logged, the exchange)."""

    context: _UsageContext
    event: UsageEvent
    usage: Usage | None
    refund: bool
    ended: float
    first_token_at: float | None
    answer: list[Choice] | StreamTranscript | None

    def __call__(self) -> None:
        context, event = self.context, self.event
        usage = self.usage
        context.admission.settle(
            usage.total_tokens if usage is not None else None, refund=self.refund
        )
        runtime = context.runtime
        runtime.observer.finished(
            context.state,
            event,
            started=context.started,
            upstream_at=context.upstream_at,
            ended=self.ended,
            first_token_at=self.first_token_at,
            attempts=context.attempts,
        )
        if context.messages is not None:
            log_exchange(event, context.state.get("api", "unknown"), context.messages, self.answer)


def guarded(handler: Handler) -> Handler:
    """Render ``GatewayError``s as OpenAI error bodies; anything else is the middleware's."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as error:
            request.scope.setdefault("state", {})["error_code"] = error.code
            return error_response(error)

    endpoint.__name__ = handler.__name__
    return endpoint
