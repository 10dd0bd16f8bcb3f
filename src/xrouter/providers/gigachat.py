"""GigaChat (Sber), REST v1 "classic" contract.

Order: credentials, request conversion, response conversion, finish reasons and usage,
errors, streaming, embeddings, catalogue.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletionRequest,
    Choice,
    DeveloperMessage,
    Embedding,
    EmbeddingsRequest,
    ModelCard,
    PromptTokensDetails,
    ResponseMessage,
    SystemMessage,
    ToolMessage,
    Usage,
    UserMessage,
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
from xrouter.providers.content import refuse_unsupported, text_of
from xrouter.providers.errors import malformed_response, truncated_stream, upstream_status_error
from xrouter.providers.transport import UpstreamTransport, parse_retry_after, transport_error

NAME = "gigachat"
# Refresh this long before the token's own expiry, so no request carries a dying token.
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
_UNSUPPORTED = (
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "response_format",
)
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "function_call": "tool_calls",
    "blacklist": "content_filter",
}
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class GigaChatConfig:
    base_url: str
    auth_url: str
    credentials: str | None = None
    access_token: str | None = None
    scope: str = "GIGACHAT_API_PERS"
    ca_bundle: Path | None = None
    verify_tls: bool = True


# Credentials


class _Token(msgspec.Struct):
    access_token: str
    expires_at: int  # milliseconds since the epoch


class GigaChatTokenCache:
    """Holds the OAuth access token; concurrent requests at expiry share one refresh."""

    def __init__(
        self,
        config: GigaChatConfig,
        session: aiohttp.ClientSession,
        ssl_option: ssl.SSLContext | bool,
    ) -> None:
        self._config = config
        self._session = session
        self._ssl = ssl_option
        self._token: str | None = config.access_token
        self._expires_at = float("inf") if config.access_token else 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.time() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires_at:
                await self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        if self._config.credentials:
            self._token = None
            self._expires_at = 0.0

    async def _refresh(self) -> None:
        if not self._config.credentials:
            raise upstream_status_error(NAME, 401, None, None)
        headers = {
            "Authorization": f"Basic {self._config.credentials}",
            "RqUID": str(uuid.uuid4()),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        try:
            async with self._session.post(
                self._config.auth_url,
                data={"scope": self._config.scope},
                headers=headers,
                ssl=self._ssl,
            ) as response:
                body = await response.read()
                if response.status != 200:
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise upstream_status_error(NAME, 401, None, retry_after)
        except UpstreamError:
            raise
        except Exception as error:
            raise transport_error(NAME, error) from error
        try:
            token = msgspec.json.decode(body, type=_Token)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "OAuth token") from None
        self._token = token.access_token
        self._expires_at = token.expires_at / 1000 - TOKEN_REFRESH_MARGIN_SECONDS


class GigaChatProvider(Provider):
    name = NAME

    def __init__(
        self, config: GigaChatConfig, session: aiohttp.ClientSession, *, emulated: bool = False
    ) -> None:
        super().__init__(emulated=emulated)
        self._config = config
        self._ssl = _build_ssl(config)
        self._transport = UpstreamTransport(session)
        self._tokens = GigaChatTokenCache(config, session, self._ssl)

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._tokens.token()}"}

    async def invalidate_credentials(self) -> None:
        self._tokens.invalidate()

    def ssl_context(self) -> ssl.SSLContext | bool:
        return self._ssl

    # Request conversion

    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        _refuse_version(target)
        refuse_unsupported(request, NAME, _UNSUPPORTED)
        payload: dict[str, Any] = {
            "model": target.model,
            "messages": _messages(request),
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
        headers = dict(_JSON)
        if request.stream:
            payload["stream"] = True
            headers["Accept"] = "text/event-stream"
            headers["Cache-Control"] = "no-store"
        return UpstreamRequest(
            "POST",
            f"{self._config.base_url}/chat/completions",
            msgspec.json.encode(payload),
            headers,
        )

    # Response conversion

    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        try:
            reply = msgspec.json.decode(body, type=_Completion)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "chat completion") from None
        choices = [
            Choice(
                index=choice.index,
                message=ResponseMessage(content=choice.message.content or ""),
                finish_reason=_finish_reason(choice.finish_reason),
            )
            for choice in reply.choices
        ]
        return ChatReply(choices, _usage(reply.usage), reply.model)

    # Errors

    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        message: str | None = None
        try:
            message = msgspec.json.decode(body, type=_ErrorBody).message
        except msgspec.DecodeError:
            message = body.decode("utf-8", "replace")[:200] or None
        return upstream_status_error(NAME, status, message, retry_after)

    # Streaming

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        return GigaChatStreamDecoder()

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


def _build_ssl(config: GigaChatConfig) -> ssl.SSLContext | bool:
    if not config.verify_tls:
        return False
    if config.ca_bundle is None:
        return True
    context = ssl.create_default_context()
    # The Russian Trusted Root CA is added to, not substituted for, the system roots.
    context.load_verify_locations(cafile=str(config.ca_bundle))
    return context


def _refuse_version(target: ModelTarget) -> None:
    if target.version is not None:
        raise InvalidRequestError(
            f"gigachat models take no version suffix; use '{NAME}/{target.model}'.",
            param="model",
            code="model_not_found",
        )


def _messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        param = f"messages[{index}].content"
        if isinstance(message, SystemMessage | DeveloperMessage):
            # GigaChat takes one system message, first; a later one is refused with 422 upstream.
            role = "system" if not messages else "user"
            messages.append({"role": role, "content": text_of(message.content, param, NAME)})
        elif isinstance(message, UserMessage):
            messages.append({"role": "user", "content": text_of(message.content, param, NAME)})
        elif isinstance(message, AssistantMessage):
            if message.tool_calls:
                raise InvalidRequestError(
                    "gigachat tool calls are not supported through this gateway yet.",
                    param=f"messages[{index}].tool_calls",
                    code="unsupported_parameter",
                )
            messages.append({"role": "assistant", "content": text_of(message.content, param, NAME)})
        elif isinstance(message, ToolMessage):
            raise InvalidRequestError(
                "gigachat tool messages are not supported through this gateway yet.",
                param=f"messages[{index}]",
                code="unsupported_parameter",
            )
    return messages


# Wire structs of GigaChat's answers (only the fields the gateway reads)


class _Message(msgspec.Struct):
    content: str | None = None
    role: str = "assistant"


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


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Delta
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
    """GigaChat streams server-sent events whose chunks are already deltas."""

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
            reason = _finish_reason(choice.finish_reason)
            deltas.append(
                StreamDelta(
                    content=choice.delta.content,
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
