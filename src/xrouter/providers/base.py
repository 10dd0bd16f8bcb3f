"""The interface every provider implements.

A provider translates between the OpenAI wire format and its upstream's. The translation
methods are pure (bytes and structs in, structs out) so they are tested against fixtures
without a network; only ``auth_headers`` and ``list_models`` do I/O. Sending is done by
``providers.transport``, which is the same for every provider.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import (
    ChatCompletionRequest,
    Choice,
    Embedding,
    EmbeddingsRequest,
    ModelCard,
    ToolCallDelta,
    Usage,
)


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """A model as the gateway routes it: ``<provider>/<model>[:<version>]``."""

    provider: str
    model: str
    version: str | None = None
    # Built once: routing, metrics and usage read it several times per request.
    public_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suffix = f":{self.version}" if self.version else ""
        object.__setattr__(self, "public_id", f"{self.provider}/{self.model}{suffix}")


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP request to a provider, ready to send (credentials are added by the transport)."""

    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ChatReply:
    """A provider's answer to a non-streaming chat request, already in OpenAI terms."""

    choices: list[Choice]
    usage: Usage | None
    model_version: str | None = None


@dataclass(slots=True)
class StreamDelta:
    """One step of a streamed answer, in OpenAI terms; the gateway frames it as a chunk."""

    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    model_version: str | None = None
    index: int = 0


@dataclass(slots=True)
class EmbeddingsReply:
    data: list[Embedding]
    prompt_tokens: int


class StreamDecoder(abc.ABC):
    """Turns an upstream stream, fed one line at a time, into OpenAI deltas."""

    @abc.abstractmethod
    def feed(self, line: bytes) -> list[StreamDelta]:
        """Decode one line of the upstream body (without its line ending)."""

    @abc.abstractmethod
    def close(self) -> list[StreamDelta]:
        """Called at the end of the upstream body; raises ``UpstreamError`` if it was cut short."""


class Provider(abc.ABC):
    """One upstream LLM service. Implementations live one per module in ``providers/``."""

    name: ClassVar[str]
    # Statuses after which the transport drops the credentials and retries once.
    reauthenticate_on: ClassVar[frozenset[int]] = frozenset({401})

    def __init__(self, *, emulated: bool = False) -> None:
        self.emulated = emulated

    # Credentials

    @abc.abstractmethod
    async def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request, refreshing a token first if it is due."""

    async def invalidate_credentials(self) -> None:
        """Forget a cached token after the upstream refused it (default: nothing to forget)."""

    def ssl_context(self) -> object | None:
        """TLS settings for this provider's requests (None: the session's default)."""
        return None

    # Catalogue

    @abc.abstractmethod
    async def list_models(self) -> list[ModelCard]:
        """Every model this provider serves, with ids in the gateway's ``<provider>/...`` form."""

    # Chat

    @abc.abstractmethod
    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        """Translate an OpenAI chat request; raise ``InvalidRequestError`` for what cannot be."""

    @abc.abstractmethod
    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        """Translate the upstream's non-streaming answer."""

    @abc.abstractmethod
    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        """A fresh decoder for one streamed answer."""

    # Token counting (optional)

    def count_tokens_request(
        self, request: ChatCompletionRequest, target: ModelTarget
    ) -> UpstreamRequest:
        """An upstream call that counts the prompt tokens of ``request`` with the provider's own
        tokenizer. The default refuses with 400: the provider has no counting endpoint."""
        raise self._no_token_counting()

    def count_tokens_reply(self, body: bytes, target: ModelTarget) -> int:
        """The prompt tokens in the answer to ``count_tokens_request``."""
        raise self._no_token_counting()

    def _no_token_counting(self) -> InvalidRequestError:
        return InvalidRequestError(
            f"{self.name} models cannot count tokens through this gateway.",
            param="model",
            code="unsupported_endpoint",
        )

    # Embeddings

    @abc.abstractmethod
    def embeddings_requests(
        self, request: EmbeddingsRequest, texts: list[str], target: ModelTarget
    ) -> list[UpstreamRequest]:
        """One or more upstream calls that together embed ``texts`` (in order)."""

    @abc.abstractmethod
    def embeddings_reply(self, bodies: list[bytes], target: ModelTarget) -> EmbeddingsReply:
        """Merge the answers of ``embeddings_requests`` into one list of vectors."""

    # Errors

    @abc.abstractmethod
    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        """Map a non-2xx upstream answer to a gateway error that is safe to show a client."""
