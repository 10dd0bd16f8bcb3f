"""The gRPC face of the YandexGPT emulator: the ``yandexcloud`` servicers over the same core.

It runs as a ``grpc.aio`` server on the event loop that serves the HTTP faces, so the core's
state (operations, issued tokens, the error injector) is used from one thread without locks,
and a slow stream never holds a worker thread. The official ``yandex-cloud-ml-sdk`` reaches it
through its ``service_map`` (``ai-foundation-models`` and ``operation``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import NoReturn, TypeVar

import grpc
from yandex.cloud.ai.foundation_models.v1.embedding import embedding_service_pb2_grpc
from yandex.cloud.ai.foundation_models.v1.embedding.embedding_service_pb2 import (
    TextEmbeddingRequest,
    TextEmbeddingResponse,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as generation_grpc,
)
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
    CompletionResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from yandex.cloud.operation import operation_service_pb2_grpc
from yandex.cloud.operation.operation_pb2 import Operation
from yandex.cloud.operation.operation_service_pb2 import (
    CancelOperationRequest,
    GetOperationRequest,
)

from xrouter.emulators.http import EmulatedApiError
from xrouter.emulators.yandex_core import ERRORS, YandexCore

_T = TypeVar("_T")
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_Context = grpc.aio.ServicerContext[object, object]


def _metadata(context: _Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


async def _abort(context: _Context, error: EmulatedApiError) -> NoReturn:
    grpc_code, _, default_message = ERRORS.get(error.status, ERRORS[500])
    await context.abort(_CODES[grpc_code], error.message or default_message)
    raise AssertionError("abort returns only by raising")  # pragma: no cover


async def _unary(core: YandexCore, context: _Context, call: Callable[[str | None], _T]) -> _T:
    """Admit the call, then run ``call(folder_header)``; errors become gRPC status codes."""
    try:
        await core.admit(_metadata(context, "authorization"))
        return call(_metadata(context, "x-folder-id"))
    except EmulatedApiError as error:
        await _abort(context, error)


class _TextGeneration(generation_grpc.TextGenerationServiceServicer):
    def __init__(self, core: YandexCore) -> None:
        self._core = core

    async def Completion(
        self, request: CompletionRequest, context: _Context
    ) -> AsyncIterator[CompletionResponse]:
        core = self._core
        frames = await _unary(core, context, lambda folder: core.completion(request, folder))
        pause = core.options.stream_delay_ms / 1000
        for index, frame in enumerate(frames):
            if index and pause:
                await asyncio.sleep(pause)
            yield frame


class _TextGenerationAsync(generation_grpc.TextGenerationAsyncServiceServicer):
    def __init__(self, core: YandexCore) -> None:
        self._core = core

    async def Completion(self, request: CompletionRequest, context: _Context) -> Operation:
        core = self._core
        return await _unary(core, context, lambda folder: core.start_operation(request, folder))


class _Tokenizer(generation_grpc.TokenizerServiceServicer):
    def __init__(self, core: YandexCore) -> None:
        self._core = core

    async def Tokenize(self, request: TokenizeRequest, context: _Context) -> TokenizeResponse:
        core = self._core
        return await _unary(core, context, lambda folder: core.tokenize(request, folder))

    async def TokenizeCompletion(
        self, request: CompletionRequest, context: _Context
    ) -> TokenizeResponse:
        core = self._core
        return await _unary(core, context, lambda folder: core.tokenize_completion(request, folder))


class _Embeddings(embedding_service_pb2_grpc.EmbeddingsServiceServicer):
    def __init__(self, core: YandexCore) -> None:
        self._core = core

    async def TextEmbedding(
        self, request: TextEmbeddingRequest, context: _Context
    ) -> TextEmbeddingResponse:
        core = self._core
        return await _unary(core, context, lambda folder: core.embed(request, folder))


class _Operations(operation_service_pb2_grpc.OperationServiceServicer):
    def __init__(self, core: YandexCore) -> None:
        self._core = core

    async def Get(self, request: GetOperationRequest, context: _Context) -> Operation:
        core = self._core
        return await _unary(core, context, lambda _: core.operation(request.operation_id))

    async def Cancel(self, request: CancelOperationRequest, context: _Context) -> Operation:
        core = self._core
        return await _unary(core, context, lambda _: core.cancel_operation(request.operation_id))


async def start_grpc_server(core: YandexCore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Serve the gRPC face on ``host:port`` (0 picks a free port); returns the bound port."""
    server = grpc.aio.server()
    generation_grpc.add_TextGenerationServiceServicer_to_server(_TextGeneration(core), server)
    generation_grpc.add_TextGenerationAsyncServiceServicer_to_server(
        _TextGenerationAsync(core), server
    )
    generation_grpc.add_TokenizerServiceServicer_to_server(_Tokenizer(core), server)
    embedding_service_pb2_grpc.add_EmbeddingsServiceServicer_to_server(_Embeddings(core), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(_Operations(core), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server, bound
