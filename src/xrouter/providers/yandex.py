"""YandexGPT (Yandex Cloud Foundation Models), REST API.

Order: credentials, request conversion, response conversion, finish reasons and usage,
errors, streaming, embeddings, catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
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

NAME = "yandex"
CHAT_MODELS = ("yandexgpt", "yandexgpt-lite", "yandexgpt-32k", "llama", "llama-lite")
EMBEDDING_MODELS = ("text-search-doc", "text-search-query")
CHAT_VERSIONS = ("latest", "rc", "deprecated")
# Embedding models are documented with the latest branch only.
EMBEDDING_VERSIONS = ("latest",)
_UNSUPPORTED = (
    "n",
    "stop",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "response_format",
    "repetition_penalty",
)
_FINISH_REASONS = {
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
}
_CONTENT_FILTER = "ALTERNATIVE_STATUS_CONTENT_FILTER"


@dataclass(frozen=True, slots=True)
class YandexConfig:
    base_url: str
    folder_id: str
    api_key: str | None = None
    iam_token: str | None = None


class YandexProvider(Provider):
    name = NAME

    def __init__(
        self, config: YandexConfig, session: aiohttp.ClientSession, *, emulated: bool = False
    ) -> None:
        super().__init__(emulated=emulated)
        self._config = config
        if config.api_key:
            authorization = f"Api-Key {config.api_key}"
        elif config.iam_token:
            authorization = f"Bearer {config.iam_token}"
        else:
            raise ValueError("YandexConfig needs an API key or an IAM token")
        self._headers = {"Authorization": authorization, "x-folder-id": config.folder_id}

    # Credentials

    async def auth_headers(self) -> dict[str, str]:
        return self._headers

    # Request conversion

    def model_uri(self, target: ModelTarget, scheme: str = "gpt") -> str:
        return f"{scheme}://{self._config.folder_id}/{target.model}/{target.version or 'latest'}"

    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        refuse_unsupported(request, NAME, _UNSUPPORTED)
        options: dict[str, Any] = {"stream": request.stream}
        if request.temperature is not None:
            # Yandex takes 0..1; OpenAI's 1..2 is clamped rather than rescaled so that common
            # values (0.3, 0.7) mean the same on both.
            options["temperature"] = min(request.temperature, 1.0)
        if request.output_limit is not None:
            options["maxTokens"] = str(request.output_limit)
        payload = {
            "modelUri": self.model_uri(target),
            "completionOptions": options,
            "messages": _messages(request),
        }
        return UpstreamRequest(
            "POST",
            f"{self._config.base_url}/foundationModels/v1/completion",
            msgspec.json.encode(payload),
            {"Content-Type": "application/json"},
        )

    # Response conversion

    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        try:
            result = msgspec.json.decode(body, type=_Envelope).result
        except msgspec.DecodeError:
            raise malformed_response(NAME, "completion") from None
        if result is None:
            raise malformed_response(NAME, "completion without a result")
        choices = [
            Choice(
                index=index,
                message=ResponseMessage(content=alternative.message.text),
                finish_reason=_FINISH_REASONS.get(alternative.status, "stop"),
            )
            for index, alternative in enumerate(result.alternatives)
        ]
        return ChatReply(choices, _usage(result.usage), result.modelVersion)

    # Errors

    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        try:
            envelope = msgspec.json.decode(body, type=_ErrorEnvelope)
            message = envelope.error.message if envelope.error else envelope.message
        except msgspec.DecodeError:
            message = body.decode("utf-8", "replace")[:200] or None
        return upstream_status_error(NAME, status, message, retry_after)

    # Streaming

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        return YandexStreamDecoder()

    # Embeddings

    def embeddings_requests(
        self, request: EmbeddingsRequest, texts: list[str], target: ModelTarget
    ) -> list[UpstreamRequest]:
        url = f"{self._config.base_url}/foundationModels/v1/textEmbedding"
        uri = self.model_uri(target, scheme="emb")
        extra = {"dim": str(request.dimensions)} if request.dimensions else {}
        headers = {"Content-Type": "application/json"}
        # Yandex embeds one text per call.
        return [
            UpstreamRequest(
                "POST", url, msgspec.json.encode({"modelUri": uri, "text": text, **extra}), headers
            )
            for text in texts
        ]

    def embeddings_reply(self, bodies: list[bytes], target: ModelTarget) -> EmbeddingsReply:
        data: list[Embedding] = []
        tokens = 0
        for index, body in enumerate(bodies):
            try:
                reply = msgspec.json.decode(body, type=_EmbeddingReply)
            except msgspec.DecodeError:
                raise malformed_response(NAME, "embedding") from None
            data.append(Embedding(index=index, embedding=reply.embedding))
            tokens += int(reply.numTokens)
        return EmbeddingsReply(data, tokens)

    # Catalogue

    async def list_models(self) -> list[ModelCard]:
        # The REST API has no model listing; the families and branches are documented.
        cards: list[ModelCard] = []
        families = (
            ("chat", CHAT_MODELS, CHAT_VERSIONS),
            ("embeddings", EMBEDDING_MODELS, EMBEDDING_VERSIONS),
        )
        for kind, models, versions in families:
            for model in models:
                ids = [f"{NAME}/{model}"] + [f"{NAME}/{model}:{version}" for version in versions]
                cards.extend(
                    ModelCard(id=model_id, owned_by="yandex", type=kind, emulated=self.emulated)  # type: ignore[arg-type]
                    for model_id in ids
                )
        return cards


def _messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    messages = []
    for index, message in enumerate(request.messages):
        param = f"messages[{index}].content"
        if isinstance(message, SystemMessage | DeveloperMessage):
            role = "system"
        elif isinstance(message, UserMessage):
            role = "user"
        elif isinstance(message, AssistantMessage):
            if message.tool_calls:
                raise InvalidRequestError(
                    "yandex tool calls are not supported through this gateway yet.",
                    param=f"messages[{index}].tool_calls",
                    code="unsupported_parameter",
                )
            role = "assistant"
        elif isinstance(message, ToolMessage):
            raise InvalidRequestError(
                "yandex tool messages are not supported through this gateway yet.",
                param=f"messages[{index}]",
                code="unsupported_parameter",
            )
        messages.append({"role": role, "text": text_of(message.content, param, NAME)})
    return messages


# Wire structs of Yandex's answers (proto3 JSON mapping: int64 as strings, camelCase)


class _Message(msgspec.Struct):
    text: str = ""
    role: str = "assistant"


class _Alternative(msgspec.Struct):
    message: _Message
    status: str = "ALTERNATIVE_STATUS_UNSPECIFIED"


class _Usage(msgspec.Struct):
    inputTextTokens: str = "0"
    completionTokens: str = "0"
    totalTokens: str = "0"


class _Result(msgspec.Struct):
    alternatives: list[_Alternative]
    usage: _Usage | None = None
    modelVersion: str | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    grpcCode: int | None = None
    httpCode: int | None = None


class _Envelope(msgspec.Struct):
    result: _Result | None = None
    error: _Error | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _Error | None = None
    message: str | None = None


class _EmbeddingReply(msgspec.Struct):
    embedding: list[float]
    numTokens: str = "0"
    modelVersion: str | None = None


# Usage


def _usage(usage: _Usage | None) -> Usage | None:
    if usage is None:
        return None
    try:
        return Usage(
            int(usage.inputTextTokens), int(usage.completionTokens), int(usage.totalTokens)
        )
    except ValueError:
        raise malformed_response(NAME, "usage counts") from None


# Streaming


class YandexStreamDecoder(StreamDecoder):
    """Yandex streams one JSON object per line, each carrying the whole text so far.

    The deltas are the new suffix of each alternative's text. A content filter replaces the
    text instead of extending it, so its text is sent whole.
    """

    _decoder = msgspec.json.Decoder(_Envelope)

    def __init__(self) -> None:
        self._sent: dict[int, str] = {}
        self._finished = False

    def feed(self, line: bytes) -> list[StreamDelta]:
        if not line.strip():
            return []
        try:
            envelope = self._decoder.decode(line)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "stream line") from None
        if envelope.error is not None:
            status = envelope.error.httpCode or 502
            raise upstream_status_error(NAME, status, envelope.error.message, None)
        if envelope.result is None:
            raise malformed_response(NAME, "stream line without a result")
        return self._deltas(envelope.result)

    def _deltas(self, result: _Result) -> list[StreamDelta]:
        deltas = []
        for index, alternative in enumerate(result.alternatives):
            text = alternative.message.text
            sent = self._sent.get(index, "")
            if alternative.status == _CONTENT_FILTER or not text.startswith(sent):
                piece = text
            else:
                piece = text[len(sent) :]
            self._sent[index] = text
            reason = _FINISH_REASONS.get(alternative.status)
            if reason is not None:
                self._finished = True
            if piece or reason:
                deltas.append(
                    StreamDelta(
                        content=piece,
                        finish_reason=reason,
                        usage=_usage(result.usage) if reason else None,
                        model_version=result.modelVersion,
                        index=index,
                    )
                )
        return deltas

    def close(self) -> list[StreamDelta]:
        if not self._finished:
            raise truncated_stream(NAME)
        return []
