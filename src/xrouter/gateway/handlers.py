"""The ``/v1`` endpoints. Each reads top to bottom: authenticate, parse, route, limit, call,
respond, record usage (which settles the rate-limit reservation). Nothing here touches the
database: keys and models come from memory and usage is handed to a buffered recorder."""

from __future__ import annotations

import asyncio
import base64
import time
from array import array
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from xrouter.auth.gateway_auth import authenticate
from xrouter.errors import GatewayError, InvalidRequestError
from xrouter.gateway.http import decode_json, error_response, json_response, read_body
from xrouter.gateway.streaming import ChunkStream, StreamOutcome
from xrouter.gateway.wire import (
    ChatCompletion,
    ChatCompletionRequest,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
    ModelList,
    Usage,
)
from xrouter.keys.cache import ActiveKey
from xrouter.limits.limiter import Admission
from xrouter.providers.base import ModelTarget, Provider, UpstreamRequest
from xrouter.runtime import Runtime
from xrouter.usage.recorder import UsageEvent

Handler = Callable[[Request], Awaitable[Response]]
_CHAT = msgspec.json.Decoder(ChatCompletionRequest)
_EMBEDDINGS = msgspec.json.Decoder(EmbeddingsRequest)
# Yandex embeds one text per call: this many run at once for one client request.
EMBEDDING_CALLS_IN_PARALLEL = 8


class GatewayHandlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        runtime = self.runtime
        key = authenticate(request, runtime.keys, runtime.access_tokens)
        raw = await read_body(request, runtime.settings.max_request_bytes)
        chat = decode_json(raw, _CHAT)
        provider, target = runtime.resolver.resolve(chat.model, "chat")
        upstream = provider.chat_request(chat, target)
        limiter = runtime.limiter
        admission = await limiter.admit(key, target, limiter.policy.chat_tokens(chat, len(raw)))
        request_id = request_id_of(request)
        usage = _UsageContext(runtime, request_id, key, target, chat.stream, started, admission)
        if chat.stream:
            return await self._stream(provider, target, chat, upstream, usage)
        try:
            reply = provider.chat_reply(await runtime.transport.send(provider, upstream), target)
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise
        completion = ChatCompletion(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=target.public_id,
            choices=reply.choices,
            usage=reply.usage,
            system_fingerprint=reply.model_version,
        )
        usage.record(200, reply.usage)
        return json_response(completion, headers=dict(admission.headers))

    async def _stream(
        self,
        provider: Provider,
        target: ModelTarget,
        chat: ChatCompletionRequest,
        upstream: UpstreamRequest,
        usage: _UsageContext,
    ) -> Response:
        lines = self.runtime.transport.stream_lines(provider, upstream)
        try:
            # Wait for the upstream's first line so a refusal still gets its own HTTP status.
            first_line: bytes | None = await anext(lines)
        except StopAsyncIteration:
            first_line = None
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise

        def finish(outcome: StreamOutcome) -> None:
            status = outcome.error.status if outcome.error else 200
            usage.record(
                status, outcome.usage, error=outcome.error, first_token_at=outcome.first_token_at
            )

        stream = ChunkStream(
            f"chatcmpl-{usage.request_id}",
            target.public_id,
            chat.include_usage_in_stream,
            provider.stream_decoder(target),
            finish,
        )
        return StreamingResponse(
            stream.events(first_line, lines),
            media_type="text/event-stream",
            headers={
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
                **usage.admission.headers,
            },
        )

    async def models(self, request: Request) -> Response:
        authenticate(request, self.runtime.keys, self.runtime.access_tokens)
        return json_response(ModelList(self.runtime.catalog.models()))

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        runtime = self.runtime
        key = authenticate(request, runtime.keys, runtime.access_tokens)
        raw = await read_body(request, runtime.settings.max_request_bytes)
        body = decode_json(raw, _EMBEDDINGS)
        provider, target = runtime.resolver.resolve(body.model, "embeddings")
        texts = body.texts()
        if texts is None:
            raise InvalidRequestError(
                "Token arrays are not accepted as embedding input; send text.",
                param="input",
                code="unsupported_input",
            )
        limiter = runtime.limiter
        admission = await limiter.admit(key, target, limiter.policy.embedding_tokens(len(raw)))
        usage = _UsageContext(
            runtime, request_id_of(request), key, target, False, started, admission
        )
        calls = provider.embeddings_requests(body, texts, target)
        limit = asyncio.Semaphore(EMBEDDING_CALLS_IN_PARALLEL)

        async def send(call: UpstreamRequest) -> bytes:
            async with limit:
                return await runtime.transport.send(provider, call)

        try:
            bodies = await asyncio.gather(*(send(call) for call in calls))
            reply = provider.embeddings_reply(list(bodies), target)
        except GatewayError as error:
            usage.record(error.status, None, error=error)
            raise
        data = reply.data
        if body.encoding_format == "base64":
            data = [Embedding(item.index, _base64_floats(item.embedding)) for item in data]
        tokens = reply.prompt_tokens
        usage.record(200, Usage(tokens, 0, tokens))
        return json_response(
            EmbeddingsResponse(data, target.public_id, EmbeddingsUsage(tokens, tokens)),
            headers=dict(admission.headers),
        )


def _base64_floats(vector: list[float] | str) -> str:
    if isinstance(vector, str):
        return vector
    # OpenAI's base64 format: little-endian float32.
    packed = array("f", vector)
    return base64.b64encode(packed.tobytes()).decode("ascii")


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


class _UsageContext:
    """What one request needs to write its usage record when it ends."""

    __slots__ = ("admission", "key", "request_id", "runtime", "started", "stream", "target")

    def __init__(
        self,
        runtime: Runtime,
        request_id: str,
        key: ActiveKey,
        target: ModelTarget,
        stream: bool,
        started: float,
        admission: Admission,
    ) -> None:
        self.admission = admission
        self.runtime = runtime
        self.request_id = request_id
        self.key = key
        self.target = target
        self.stream = stream
        self.started = started

    def record(
        self,
        status: int,
        usage: Usage | None,
        *,
        error: GatewayError | None = None,
        first_token_at: float | None = None,
    ) -> None:
        # Settle the rate-limit reservation: real usage replaces the estimate; a request that
        # failed before the provider produced anything is refunded, so its retry is not
        # charged twice.
        self.admission.settle(
            usage.total_tokens if usage is not None else None,
            refund=usage is None and error is not None and first_token_at is None,
        )
        if error is not None:
            # The error is about to be rendered: it carries the rate-limit headers too.
            error.headers = {**self.admission.headers, **error.headers}
        now = time.perf_counter()
        cached = 0
        if usage is not None and not isinstance(usage.prompt_tokens_details, msgspec.UnsetType):
            cached = usage.prompt_tokens_details.cached_tokens
        self.runtime.usage.record(
            UsageEvent(
                request_id=self.request_id,
                key_id=self.key.id,
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
        )


def guarded(handler: Handler) -> Handler:
    """Render ``GatewayError``s as OpenAI error bodies; anything else is the middleware's."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as error:
            return error_response(error)

    endpoint.__name__ = handler.__name__
    return endpoint
