"""The YandexGPT emulator's core: one state and one set of operations behind every face.

The REST, gRPC and OpenAI-compatible faces translate their wire format to the protobuf
messages of the ``yandexcloud`` package, call the core, and render its protobuf answers. The
core raises ``EmulatedApiError`` with an HTTP status; ``ERRORS`` gives the gRPC code for it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.timestamp_pb2 import Timestamp
from yandex.cloud.ai.foundation_models.v1.embedding.embedding_service_pb2 import (
    TextEmbeddingRequest,
    TextEmbeddingResponse,
)
from yandex.cloud.ai.foundation_models.v1.text_common_pb2 import Token
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
    CompletionResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from yandex.cloud.operation.operation_pb2 import Operation

from xrouter.emulators import replies
from xrouter.emulators.http import EmulatedApiError, delay
from xrouter.emulators.options import EmulatorOptions, ErrorInjector
from xrouter.emulators.yandex_generation import check_completion_request, completion_frames
from xrouter.emulators.yandex_iam import IamAuthority

# (model, branch) -> modelVersion; every pair is distinct so tests can tell branches apart.
MODEL_VERSIONS: dict[tuple[str, str], str] = {
    ("yandexgpt", "latest"): "23.10.2025",
    ("yandexgpt", "rc"): "27.11.2025",
    ("yandexgpt", "deprecated"): "09.02.2025",
    ("yandexgpt-lite", "latest"): "22.05.2025",
    ("yandexgpt-lite", "rc"): "25.11.2025",
    ("yandexgpt-lite", "deprecated"): "18.01.2025",
    ("yandexgpt-32k", "latest"): "19.04.2025",
    ("yandexgpt-32k", "rc"): "20.11.2025",
    ("yandexgpt-32k", "deprecated"): "07.03.2025",
    ("llama", "latest"): "06.08.2025",
    ("llama", "rc"): "14.11.2025",
    ("llama", "deprecated"): "28.02.2025",
    ("llama-lite", "latest"): "05.08.2025",
    ("llama-lite", "rc"): "12.11.2025",
    ("llama-lite", "deprecated"): "27.02.2025",
    # Hosted open models are published on the latest branch only.
    ("qwen3-235b-a22b-fp8", "latest"): "30.07.2025",
    ("gpt-oss-120b", "latest"): "12.08.2025",
}
EMBEDDING_VERSIONS: dict[str, str] = {
    "text-search-doc": "13.03.2025",
    "text-search-query": "14.03.2025",
}
EMBEDDING_DIMENSIONS = 256

# HTTP status -> (gRPC code, httpStatus text, default message).
ERRORS: dict[int, tuple[int, str, str]] = {
    400: (3, "Bad Request", "Request is invalid"),
    401: (16, "Unauthorized", "Unknown api key"),
    402: (9, "Payment Required", "Billing account is not active"),
    403: (7, "Forbidden", "Permission denied"),
    404: (5, "Not Found", "Not found"),
    413: (8, "Payload Too Large", "Request message is larger than max"),
    422: (3, "Unprocessable Entity", "Request is invalid"),
    429: (
        8,
        "Too Many Requests",
        "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: "
        "allowed 10 requests",
    ),
    500: (13, "Internal Server Error", "Internal error"),
    503: (14, "Service Unavailable", "Service is temporarily unavailable"),
    504: (4, "Gateway Timeout", "Deadline exceeded"),
}
RETRY_AFTER_SECONDS = 1
IAM_TOKEN_PATTERN = re.compile(r"t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}=*")
NO_CREDENTIALS = "IAM token or API key has to be passed in request"
_URI = re.compile(
    r"(?P<scheme>gpt|emb)://(?P<folder>[^/\s]+)/(?P<model>[^/\s@]+)(?:/(?P<branch>[^/\s]+))?"
)
# Finished operations are kept this long for polling, and at most this many at once.
OPERATION_RETENTION_SECONDS = 3600.0
MAX_OPERATIONS = 10_000
_COMPLETION_RESPONSE_TYPE = (
    "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.CompletionResponse"
)


@dataclass(slots=True)
class YandexStats:
    """Counters tests read to see how a client used the emulator."""

    api_requests: int = 0
    completion_requests: int = 0
    iam_token_requests: int = 0


@dataclass(slots=True)
class _PendingOperation:
    operation: Operation
    request: CompletionRequest
    ready_at: float


class YandexCore:
    """State and behaviour shared by every face of the YandexGPT emulator."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.stats = YandexStats()
        self.iam = IamAuthority(options.token_ttl_seconds)
        self._injector = ErrorInjector(options.error_rate, options.seed)
        self._operations: OrderedDict[str, _PendingOperation] = OrderedDict()

    # Admission: latency, credentials, injected failures

    async def admit(self, authorization: str | None) -> None:
        """Run before every API call; raises ``EmulatedApiError`` to refuse it."""
        self.stats.api_requests += 1
        await delay(self.options)
        problem = self.authentication_problem(authorization)
        if problem is not None:
            raise EmulatedApiError(401, problem)
        if self._injector.should_fail():
            raise EmulatedApiError(self.options.error_status)

    def authentication_problem(self, authorization: str | None) -> str | None:
        """Why an ``Authorization`` value is refused, or None when it is accepted."""
        if not authorization:
            return NO_CREDENTIALS
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme == "Api-Key":
            if credential and (
                self.options.api_key is None
                or secrets.compare_digest(credential.encode(), self.options.api_key.encode())
            ):
                return None
            return f"Unknown api key '{credential[:4]}…'"
        if scheme == "Bearer":
            if not IAM_TOKEN_PATTERN.fullmatch(credential):
                return "The token is invalid"
            # Tokens this emulator issued expire; any other well-formed token is accepted.
            if self.iam.expired(credential):
                return "The token has expired"
            return None
        return NO_CREDENTIALS

    def check_folder(self, header: str | None, folder: str) -> None:
        if header is not None and header != folder:
            raise EmulatedApiError(
                403, f"Folder {header} from x-folder-id does not match model_uri"
            )
        if self.options.folder_id is not None and folder != self.options.folder_id:
            raise EmulatedApiError(403, f"Permission denied to folder {folder}")

    def _model(self, uri: str, scheme: str, folder_header: str | None) -> tuple[str, str]:
        """``(model, modelVersion)`` for a model URI; an unknown URI is INVALID_ARGUMENT."""
        match = _URI.fullmatch(uri)
        if match is None or match["scheme"] != scheme:
            raise EmulatedApiError(400, "invalid model_uri")
        branch = match["branch"] or "latest"
        if scheme == "gpt":
            version = MODEL_VERSIONS.get((match["model"], branch))
        else:
            version = EMBEDDING_VERSIONS.get(match["model"]) if branch == "latest" else None
        if version is None:
            raise EmulatedApiError(400, "invalid model_uri")
        self.check_folder(folder_header, match["folder"])
        return match["model"], version

    # Text generation

    def completion(
        self, request: CompletionRequest, folder_header: str | None
    ) -> list[CompletionResponse]:
        """The frames answering ``request``: one, or a cumulative stream ending in a final one."""
        self.stats.completion_requests += 1
        _, version = self._model(request.model_uri, "gpt", folder_header)
        check_completion_request(request)
        return completion_frames(request, version, self.options.stream_chunks)

    def start_operation(self, request: CompletionRequest, folder_header: str | None) -> Operation:
        """Accept a deferred completion (``completionAsync``)."""
        self._model(request.model_uri, "gpt", folder_header)
        check_completion_request(request)
        self._forget_old_operations()
        now = time.time()
        stamp = Timestamp()
        stamp.FromSeconds(int(now))
        operation = Operation(
            id="d7q" + secrets.token_hex(9)[:17],
            description="Async GPT Completion",
            created_at=stamp,
            created_by="ajeemulatorserviceacc",
            modified_at=stamp,
            done=False,
        )
        request = CompletionRequest.FromString(request.SerializeToString())
        request.completion_options.stream = False
        # Done after as long as the answer would take to stream.
        options = self.options
        duration = (options.latency_ms + options.stream_delay_ms * options.stream_chunks) / 1000
        ready_at = asyncio.get_running_loop().time() + duration
        self._operations[operation.id] = _PendingOperation(operation, request, ready_at)
        return Operation.FromString(operation.SerializeToString())

    def operation(self, operation_id: str) -> Operation:
        """The current state of an operation; NOT_FOUND for an unknown id."""
        pending = self._operations.get(operation_id)
        if pending is None:
            raise EmulatedApiError(404, f"Operation {operation_id} not found")
        operation = pending.operation
        if not operation.done and asyncio.get_running_loop().time() >= pending.ready_at:
            self._finish(pending)
        return Operation.FromString(operation.SerializeToString())

    def cancel_operation(self, operation_id: str) -> Operation:
        pending = self._operations.get(operation_id)
        if pending is None:
            raise EmulatedApiError(404, f"Operation {operation_id} not found")
        if not pending.operation.done:
            pending.operation.done = True
            # gRPC CANCELLED, as google.rpc.Status
            pending.operation.error.code = 1
            pending.operation.error.message = "Operation was cancelled"
        return Operation.FromString(pending.operation.SerializeToString())

    def _finish(self, pending: _PendingOperation) -> None:
        operation = pending.operation
        [final] = completion_frames(pending.request, self._version_of(pending.request), 1)
        response = AnyMessage()
        response.Pack(final)
        assert response.type_url == _COMPLETION_RESPONSE_TYPE
        operation.response.CopyFrom(response)
        operation.done = True
        operation.modified_at.GetCurrentTime()

    def _version_of(self, request: CompletionRequest) -> str:
        return self._model(request.model_uri, "gpt", None)[1]

    def _forget_old_operations(self) -> None:
        horizon = asyncio.get_running_loop().time() - OPERATION_RETENTION_SECONDS
        while self._operations:
            oldest = next(iter(self._operations.values()))
            if len(self._operations) < MAX_OPERATIONS and oldest.ready_at > horizon:
                break
            self._operations.popitem(last=False)

    # Tokenizer and embeddings

    def tokenize(self, request: TokenizeRequest, folder_header: str | None) -> TokenizeResponse:
        _, version = self._model(request.model_uri, "gpt", folder_header)
        return TokenizeResponse(tokens=_tokens(request.text), model_version=version)

    def tokenize_completion(
        self, request: CompletionRequest, folder_header: str | None
    ) -> TokenizeResponse:
        _, version = self._model(request.model_uri, "gpt", folder_header)
        check_completion_request(request)
        text = "\n".join(message.text for message in request.messages)
        return TokenizeResponse(tokens=_tokens(text), model_version=version)

    def embed(
        self, request: TextEmbeddingRequest, folder_header: str | None
    ) -> TextEmbeddingResponse:
        model, version = self._model(request.model_uri, "emb", folder_header)
        if not request.text:
            raise EmulatedApiError(400, "text: must not be empty")
        if request.HasField("dim") and request.dim.value != EMBEDDING_DIMENSIONS:
            raise EmulatedApiError(400, f"dim: only {EMBEDDING_DIMENSIONS} is supported")
        return TextEmbeddingResponse(
            embedding=replies.embedding_vector(request.text, EMBEDDING_DIMENSIONS, model),
            num_tokens=replies.count_tokens(request.text),
            model_version=version,
        )


def _tokens(text: str) -> list[Token]:
    return [
        Token(id=replies.token_id(piece), text=piece, special=False)
        for piece in replies.tokenize(text)
    ]
