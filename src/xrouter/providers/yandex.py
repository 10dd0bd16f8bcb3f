"""YandexGPT (Yandex Cloud Foundation Models), REST API.

Order: credentials, request conversion, response conversion, errors, streaming, embeddings,
catalogue. The chat mapping is in ``yandex_chat`` (requests) and ``yandex_wire`` (answers and
streams); service-account IAM tokens are in ``yandex_auth``.

``yandex/<model>[:<version>]`` is served as ``gpt://<folder>/<model>/<version>``, ``latest``
when no version is given. The ``modelVersion`` that answered is reported as the response's
``system_fingerprint``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec

from xrouter.errors import UpstreamError
from xrouter.gateway.wire import (
    ChatCompletionRequest,
    Embedding,
    EmbeddingsRequest,
    ModelCard,
)
from xrouter.providers import yandex_wire
from xrouter.providers.base import (
    ChatReply,
    EmbeddingsReply,
    ModelTarget,
    Provider,
    StreamDecoder,
    UpstreamRequest,
)
from xrouter.providers.errors import malformed_response
from xrouter.providers.yandex_auth import AuthorizedKey, IamTokenCache
from xrouter.providers.yandex_chat import completion_payload

NAME = "yandex"
DEFAULT_VERSION = "latest"
# Model families and the branches Yandex publishes for them.
BRANCHES = ("latest", "rc", "deprecated")
CHAT_MODELS: dict[str, tuple[str, ...]] = {
    "yandexgpt": BRANCHES,
    "yandexgpt-lite": BRANCHES,
    "yandexgpt-32k": BRANCHES,
    "llama": BRANCHES,
    "llama-lite": BRANCHES,
    # Hosted open models are published on the latest branch only.
    "qwen3-235b-a22b-fp8": ("latest",),
    "gpt-oss-120b": ("latest",),
}
EMBEDDING_MODELS: dict[str, tuple[str, ...]] = {
    "text-search-doc": ("latest",),
    "text-search-query": ("latest",),
}
_JSON = {"Content-Type": "application/json"}


class _Tokenized(msgspec.Struct):
    tokens: list[dict[str, object]] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class YandexConfig:
    base_url: str
    folder_id: str
    api_key: str | None = None
    iam_token: str | None = None
    service_account_key: Path | None = None
    iam_url: str = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
    data_logging: bool = False


class YandexProvider(Provider):
    name = NAME

    def __init__(
        self, config: YandexConfig, session: aiohttp.ClientSession, *, emulated: bool = False
    ) -> None:
        super().__init__(emulated=emulated)
        self._config = config
        self._headers = {"x-folder-id": config.folder_id}
        if not config.data_logging:
            self._headers["x-data-logging-enabled"] = "false"
        self.iam_tokens: IamTokenCache | None = None
        if config.api_key:
            self._headers["Authorization"] = f"Api-Key {config.api_key}"
        elif config.iam_token:
            self._headers["Authorization"] = f"Bearer {config.iam_token}"
        elif config.service_account_key is not None:
            key = AuthorizedKey.from_file(config.service_account_key)
            self.iam_tokens = IamTokenCache(key, config.iam_url, session)
        else:
            raise ValueError("YandexConfig needs an API key, an IAM token or a service account key")

    # Credentials

    async def auth_headers(self) -> dict[str, str]:
        if self.iam_tokens is None:
            return self._headers
        return {**self._headers, "Authorization": f"Bearer {await self.iam_tokens.token()}"}

    async def invalidate_credentials(self) -> None:
        if self.iam_tokens is not None:
            self.iam_tokens.invalidate()

    # Request conversion

    def model_uri(self, target: ModelTarget, scheme: str = "gpt") -> str:
        version = target.version or DEFAULT_VERSION
        return f"{scheme}://{self._config.folder_id}/{target.model}/{version}"

    def chat_request(self, request: ChatCompletionRequest, target: ModelTarget) -> UpstreamRequest:
        payload = completion_payload(request, self.model_uri(target))
        return UpstreamRequest(
            "POST",
            f"{self._config.base_url}/foundationModels/v1/completion",
            msgspec.json.encode(payload),
            dict(_JSON),
        )

    # Response conversion

    def chat_reply(self, body: bytes, target: ModelTarget) -> ChatReply:
        return yandex_wire.chat_reply(body)

    # Errors

    def error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        return yandex_wire.error(status, body, retry_after)

    # Streaming

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder:
        return yandex_wire.YandexStreamDecoder()

    # Token counting

    def count_tokens_request(
        self, request: ChatCompletionRequest, target: ModelTarget
    ) -> UpstreamRequest:
        """``tokenizeCompletion`` over the very ``CompletionRequest`` a chat call would send."""
        payload = completion_payload(request, self.model_uri(target))
        return UpstreamRequest(
            "POST",
            f"{self._config.base_url}/foundationModels/v1/tokenizeCompletion",
            msgspec.json.encode(payload),
            dict(_JSON),
        )

    def count_tokens_reply(self, body: bytes, target: ModelTarget) -> int:
        try:
            answer = msgspec.json.decode(body, type=_Tokenized)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "token count") from None
        return len(answer.tokens)

    # Embeddings

    def embeddings_requests(
        self, request: EmbeddingsRequest, texts: list[str], target: ModelTarget
    ) -> list[UpstreamRequest]:
        url = f"{self._config.base_url}/foundationModels/v1/textEmbedding"
        uri = self.model_uri(target, scheme="emb")
        extra = {"dim": str(request.dimensions)} if request.dimensions else {}
        # Yandex embeds one text per call.
        return [
            UpstreamRequest(
                "POST",
                url,
                msgspec.json.encode({"modelUri": uri, "text": text, **extra}),
                dict(_JSON),
            )
            for text in texts
        ]

    def embeddings_reply(self, bodies: list[bytes], target: ModelTarget) -> EmbeddingsReply:
        data: list[Embedding] = []
        tokens = 0
        for index, body in enumerate(bodies):
            try:
                answer = msgspec.json.decode(body, type=yandex_wire.EmbeddingAnswer)
            except msgspec.DecodeError:
                raise malformed_response(NAME, "embedding") from None
            data.append(Embedding(index=index, embedding=answer.embedding))
            tokens += yandex_wire.to_int(answer.numTokens)
        return EmbeddingsReply(data, tokens)

    # Catalogue

    async def list_models(self) -> list[ModelCard]:
        """Every family, bare (its latest branch) and with each published branch.

        The REST API has no model listing; the families and branches are Yandex's documented
        ones.
        """
        cards: list[ModelCard] = []
        for kind, models in (("chat", CHAT_MODELS), ("embeddings", EMBEDDING_MODELS)):
            for model, versions in models.items():
                ids = [f"{NAME}/{model}"] + [f"{NAME}/{model}:{version}" for version in versions]
                cards.extend(
                    ModelCard(id=model_id, owned_by="yandex", type=kind, emulated=self.emulated)  # type: ignore[arg-type]
                    for model_id in ids
                )
        return cards
