"""GigaChat (Sber), REST v1 "classic" contract.

Order: credentials, request conversion, response conversion, finish reasons and usage,
errors, streaming, embeddings, catalogue. Token handling is in ``gigachat_auth``, the
tools <-> functions mapping in ``gigachat_tools``.
"""

from __future__ import annotations

import json
import ssl
from contextvars import ContextVar
from typing import Any

import aiohttp
import msgspec

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import (
    ChatCompletionRequest,
    Choice,
    Embedding,
    EmbeddingsRequest,
    FunctionCallDelta,
    ModelCard,
    PromptTokensDetails,
    ResponseMessage,
    ToolCallDelta,
    Usage,
)
from xrouter.providers.base import (
    ChatReply,
    EmbeddingsReply,
    ModelTarget,
    Provider,
    StreamDecoder,
    StreamDelta,
    UpstreamRequest,
)
from xrouter.providers.content import refuse_unsupported
from xrouter.providers.errors import (
    malformed_response,
    text_message,
    truncated_stream,
    upstream_status_error,
)
from xrouter.providers.gigachat_auth import (
    TOKEN_REFRESH_MARGIN_SECONDS,
    GigaChatConfig,
    GigaChatTokenCache,
    build_ssl,
)
from xrouter.providers.gigachat_tools import conversation, functions_fields, openai_tool_call
from xrouter.providers.transport import UpstreamTransport

__all__ = [
    "TOKEN_REFRESH_MARGIN_SECONDS",
    "GigaChatConfig",
    "GigaChatProvider",
    "GigaChatStreamDecoder",
    "GigaChatTokenCache",
]

NAME = "gigachat"
_UNSUPPORTED = ("n", "stop", "presence_penalty", "frequency_penalty")
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "function_call": "tool_calls",
    "blacklist": "content_filter",
}
_REASONING_EFFORTS = frozenset({"low", "medium", "high"})
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_EVENT_STREAM = {**_JSON, "Accept": "text/event-stream", "Cache-Control": "no-store"}
# The token each request was sent with, so a 401 discards that token and not a newer one.
_SENT_TOKEN: ContextVar[str | None] = ContextVar("gigachat_sent_token", default=None)


class GigaChatProvider(Provider):
    name = NAME

    def __init__(
        self, config: GigaChatConfig, session: aiohttp.ClientSession, *, emulated: bool = False
    ) -> None:
        super().__init__(emulated=emulated)
        self._config = config
        self._ssl = build_ssl(config)
        self._transport = UpstreamTransport(session)
        self._tokens = GigaChatTokenCache(config, session, self._ssl)
        self._chat_url = f"{config.base_url}/chat/completions"
        self._bearer_token: str | None = None
        self._bearer: dict[str, str] = {}

    # Credentials

    async def auth_headers(self) -> dict[str, str]:
        token = self._tokens.current() or await self._tokens.token()
        _SENT_TOKEN.set(token)
        if token != self._bearer_token:
            # Built once per token; the transport copies it into each request's headers.
            self._bearer = {"Authorization": f"Bearer {token}"}
            self._bearer_token = token
        return self._bearer

    async def invalidate_credentials(self) -> None:
        self._tokens.invalidate(_SENT_TOKEN.get())

    def ssl_context(self) -> ssl.SSLContext | bool:
        return self._ssl

    # Request conversion

    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        _refuse_version(target)
        refuse_unsupported(request, NAME, _UNSUPPORTED)
        payload: dict[str, Any] = {
            "model": target.model,
            "messages": conversation(request.messages),
        }
        if request.temperature is not None:
            # GigaChat requires temperature > 0; values up to 0.001 are its deterministic mode.
            payload["temperature"] = max(request.temperature, 0.001)
        if request.top_p is not None:
            payload["top_p"] = request.top_p
        if request.output_limit is not None:
            payload["max_tokens"] = request.output_limit
        if request.repetition_penalty is not None:
            payload["repetition_penalty"] = request.repetition_penalty
        payload.update(functions_fields(request))
        if (response_format := _response_format(request)) is not None:
            payload["response_format"] = response_format
        if (effort := _reasoning_effort(request)) is not None:
            payload["reasoning_effort"] = effort
        headers = _JSON
        if request.stream:
            payload["stream"] = True
            headers = _EVENT_STREAM
        # The headers are shared: the transport copies them into each request it sends.
        return UpstreamRequest("POST", self._chat_url, msgspec.json.encode(payload), headers)

    # Response conversion

    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        try:
            reply = msgspec.json.decode(body, type=_Completion)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "chat completion") from None
        choices = []
        for choice in reply.choices:
            message = choice.message
            reason = _finish_reason(choice.finish_reason)
            if message.function_call is not None:
                call = message.function_call
                tool_call = openai_tool_call(call.name, call.arguments, message.functions_state_id)
                response = ResponseMessage(content=message.content or None, tool_calls=[tool_call])
            else:
                response = ResponseMessage(content=message.content or "")
            choices.append(Choice(index=choice.index, message=response, finish_reason=reason))
        return ChatReply(choices, _usage(reply.usage), reply.model)

    # Errors

    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        message: str | None = None
        try:
            message = msgspec.json.decode(body, type=_ErrorBody).message
        except msgspec.DecodeError:
            message = text_message(body)
        return upstream_status_error(NAME, status, message, retry_after)

    # Streaming

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        return GigaChatStreamDecoder()

    # Token counting

    def count_tokens_request(
        self, request: ChatCompletionRequest, target: ModelTarget
    ) -> UpstreamRequest:
        """``/tokens/count`` over the texts GigaChat would be sent: the messages as converted
        for a chat request, function calls and results included, and the function definitions.
        """
        _refuse_version(target)
        texts = []
        for message in conversation(request.messages):
            texts.append(message.get("content") or "")
            if (call := message.get("function_call")) is not None:
                texts.append(json.dumps(call, ensure_ascii=False))
        if functions := functions_fields(request).get("functions"):
            texts.append(json.dumps(functions, ensure_ascii=False))
        body = msgspec.json.encode({"model": target.model, "input": ["\n".join(texts)]})
        return UpstreamRequest("POST", f"{self._config.base_url}/tokens/count", body, dict(_JSON))

    def count_tokens_reply(self, body: bytes, target: ModelTarget) -> int:
        try:
            counts = msgspec.json.decode(body, type=list[_TokenCount])
        except msgspec.DecodeError:
            raise malformed_response(NAME, "token count") from None
        return sum(count.tokens for count in counts)

    # Embeddings

    def embeddings_requests(
        self, request: EmbeddingsRequest, texts: list[str], target: ModelTarget
    ) -> list[UpstreamRequest]:
        _refuse_version(target)
        if request.dimensions is not None:
            raise InvalidRequestError(
                "gigachat embeddings have a fixed size; 'dimensions' cannot be set.",
                param="dimensions",
                code="unsupported_parameter",
            )
        body = msgspec.json.encode({"model": target.model, "input": texts})
        return [UpstreamRequest("POST", f"{self._config.base_url}/embeddings", body, dict(_JSON))]

    def embeddings_reply(self, bodies: list[bytes], target: ModelTarget) -> EmbeddingsReply:
        try:
            reply = msgspec.json.decode(bodies[0], type=_Embeddings)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "embeddings") from None
        data = [Embedding(index=item.index, embedding=item.embedding) for item in reply.data]
        tokens = sum(item.usage.prompt_tokens for item in reply.data if item.usage)
        return EmbeddingsReply(data, tokens)

    # Catalogue

    async def list_models(self) -> list[ModelCard]:
        request = UpstreamRequest("GET", f"{self._config.base_url}/models", None, dict(_JSON))
        body = await self._transport.send(self, request)
        try:
            models = msgspec.json.decode(body, type=_ModelList)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "model list") from None
        return [
            ModelCard(
                id=f"{NAME}/{model.id}",
                owned_by=model.owned_by or "salutedevices",
                type="embeddings" if model.type == "embedder" else "chat",
                emulated=self.emulated,
            )
            for model in models.data
        ]


def _refuse_version(target: ModelTarget) -> None:
    if target.version is not None:
        raise InvalidRequestError(
            f"gigachat models take no version suffix; use '{NAME}/{target.model}'.",
            param="model",
            code="model_not_found",
        )


def _response_format(request: ChatCompletionRequest) -> dict[str, Any] | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        raise InvalidRequestError(
            "gigachat has no JSON mode; send response_format of type 'json_schema' instead.",
            param="response_format",
            code="unsupported_value",
        )
    schema = response_format.json_schema
    if schema is None or schema.schema is None:
        raise InvalidRequestError(
            "response_format of type 'json_schema' needs json_schema.schema.",
            param="response_format.json_schema",
            code="invalid_value",
        )
    converted: dict[str, Any] = {"type": "json_schema", "schema": schema.schema}
    if schema.strict is not None:
        converted["strict"] = schema.strict
    return converted


def _reasoning_effort(request: ChatCompletionRequest) -> str | None:
    effort = request.reasoning_effort
    if effort is None or effort in _REASONING_EFFORTS:
        return effort
    raise InvalidRequestError(
        f"gigachat takes reasoning_effort 'low', 'medium' or 'high', not '{effort}'.",
        param="reasoning_effort",
        code="unsupported_value",
    )


# Wire structs of GigaChat's answers (only the fields the gateway reads)


class _FunctionCall(msgspec.Struct):
    name: str
    arguments: Any = None


class _Message(msgspec.Struct):
    content: str | None = None
    role: str = "assistant"
    function_call: _FunctionCall | None = None
    functions_state_id: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    precached_prompt_tokens: int | None = None


class _Choice(msgspec.Struct):
    message: _Message
    index: int = 0
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str | None = None
    usage: _Usage | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Message
    index: int = 0
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_ChunkChoice]
    model: str | None = None
    usage: _Usage | None = None


class _ErrorBody(msgspec.Struct):
    message: str | None = None


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0
    usage: _EmbeddingUsage | None = None


class _Embeddings(msgspec.Struct):
    data: list[_EmbeddingItem]


class _TokenCount(msgspec.Struct):
    tokens: int


class _ModelEntry(msgspec.Struct):
    id: str
    owned_by: str | None = None
    type: str = "chat"


class _ModelList(msgspec.Struct):
    data: list[_ModelEntry]


# Finish reasons and usage


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if reason == "error":
        # GigaChat's way of saying the model produced invalid function-call arguments: there is
        # no usable answer, and a new attempt may well produce valid ones.
        raise UpstreamError(
            f"{NAME} generated a function call with invalid arguments; retry the request.",
            provider=NAME,
            status=502,
            retryable=True,
            code="upstream_invalid_function_call",
        )
    return _FINISH_REASONS.get(reason, reason)


def _usage(usage: _Usage | None) -> Usage | None:
    if usage is None:
        return None
    result = Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    if usage.precached_prompt_tokens is not None:
        result.prompt_tokens_details = PromptTokensDetails(usage.precached_prompt_tokens)
    return result


# Streaming


class GigaChatStreamDecoder(StreamDecoder):
    """GigaChat streams server-sent events whose chunks are already deltas; a function call
    arrives whole in one chunk and becomes one complete OpenAI tool-call delta."""

    _decoder = msgspec.json.Decoder(_Chunk)

    def __init__(self) -> None:
        self._finished = False

    def feed(self, line: bytes) -> list[StreamDelta]:
        if not line.startswith(b"data:"):
            return []  # blank separators, comments and other SSE fields carry no content
        data = line[5:].strip()
        if data == b"[DONE]":
            self._finished = True
            return []
        try:
            chunk = self._decoder.decode(data)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "stream event") from None
        deltas = []
        for choice in chunk.choices:
            # Most chunks carry text only: no finish reason, no function call.
            reason = None if choice.finish_reason is None else _finish_reason(choice.finish_reason)
            delta = choice.delta
            deltas.append(
                StreamDelta(
                    content=delta.content,
                    tool_calls=None if delta.function_call is None else _tool_call_deltas(delta),
                    finish_reason=reason,
                    usage=_usage(chunk.usage) if reason else None,
                    model_version=chunk.model,
                    index=choice.index,
                )
            )
        return deltas

    def close(self) -> list[StreamDelta]:
        if not self._finished:
            raise truncated_stream(NAME)
        return []


def _tool_call_deltas(delta: _Message) -> list[ToolCallDelta] | None:
    call = delta.function_call
    if call is None:
        return None
    tool_call = openai_tool_call(call.name, call.arguments, delta.functions_state_id)
    return [
        ToolCallDelta(
            index=0,
            id=tool_call.id,
            type="function",
            function=FunctionCallDelta(
                name=tool_call.function.name, arguments=tool_call.function.arguments
            ),
        )
    ]
