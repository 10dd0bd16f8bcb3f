"""The REST face of the YandexGPT emulator: gRPC transcoding of the core's protobuf messages.

Requests are parsed and answers rendered with ``google.protobuf.json_format`` (the proto3
JSON mapping: lowerCamelCase, int64 as strings, enum names, zero scalars included), streams
are newline-delimited ``{"result": ...}`` objects, and errors have Yandex's REST error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from yandex.cloud.ai.foundation_models.v1.embedding.embedding_service_pb2 import (
    TextEmbeddingRequest,
)
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
    TokenizeRequest,
)

from xrouter.emulators.http import (
    EmulatedApiError,
    encode,
    json_response,
    read_json_object,
    write_paced,
)
from xrouter.emulators.yandex_core import ERRORS, RETRY_AFTER_SECONDS, YandexCore
from xrouter.emulators.yandex_iam import IAM_TOKENS_PATH

COMPLETION_PATH = "/foundationModels/v1/completion"
COMPLETION_ASYNC_PATH = "/foundationModels/v1/completionAsync"
EMBEDDING_PATH = "/foundationModels/v1/textEmbedding"
TOKENIZE_PATH = "/foundationModels/v1/tokenize"
TOKENIZE_COMPLETION_PATH = "/foundationModels/v1/tokenizeCompletion"
OPERATION_PATH = "/operations/{operation_id:[^/:]+}"

CORE_KEY = web.AppKey("yandex_core", YandexCore)
_MessageT = TypeVar("_MessageT", bound=Message)
_Handler = Callable[[web.Request, YandexCore], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str | None = None) -> web.Response:
    """Yandex's REST error body: ``{"error": {grpcCode, httpCode, message, httpStatus, ...}}``."""
    grpc_code, http_status, default_message = ERRORS.get(status, ERRORS[500])
    body = {
        "error": {
            "grpcCode": grpc_code,
            "httpCode": status,
            "message": message or default_message,
            "httpStatus": http_status,
            "details": [],
        }
    }
    response = json_response(body, status)
    if status == 429:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def render(message: Message) -> dict[str, Any]:
    """A protobuf message as proto3 JSON, zero scalars included as the real service sends them."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _api(handler: _Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler with admission (latency, credentials, injected errors) and error bodies."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE_KEY]
        try:
            await core.admit(request.headers.get("Authorization"))
            return await handler(request, core)
        except EmulatedApiError as error:
            return error_response(error.status, error.message)

    return wrapped


async def _parse(request: web.Request, message: _MessageT) -> _MessageT:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise EmulatedApiError(413) from None
    try:
        return json_format.Parse(raw, message)
    except json_format.ParseError as error:
        raise EmulatedApiError(400, f"Syntax error: {error}"[:300]) from None


def _folder(request: web.Request) -> str | None:
    return request.headers.get("x-folder-id")


async def _completion(request: web.Request, core: YandexCore) -> web.StreamResponse:
    body = await _parse(request, CompletionRequest())
    frames = core.completion(body, _folder(request))
    if not body.completion_options.stream:
        return json_response({"result": render(frames[0])})
    lines = [encode({"result": render(frame)}) + b"\n" for frame in frames]
    return await write_paced(request, core.options, {"Content-Type": "application/json"}, lines)


async def _completion_async(request: web.Request, core: YandexCore) -> web.StreamResponse:
    body = await _parse(request, CompletionRequest())
    return json_response(render(core.start_operation(body, _folder(request))))


async def _operation(request: web.Request, core: YandexCore) -> web.StreamResponse:
    return json_response(render(core.operation(request.match_info["operation_id"])))


async def _cancel_operation(request: web.Request, core: YandexCore) -> web.StreamResponse:
    return json_response(render(core.cancel_operation(request.match_info["operation_id"])))


async def _tokenize(request: web.Request, core: YandexCore) -> web.StreamResponse:
    body = await _parse(request, TokenizeRequest())
    return json_response(render(core.tokenize(body, _folder(request))))


async def _tokenize_completion(request: web.Request, core: YandexCore) -> web.StreamResponse:
    body = await _parse(request, CompletionRequest())
    return json_response(render(core.tokenize_completion(body, _folder(request))))


async def _text_embedding(request: web.Request, core: YandexCore) -> web.StreamResponse:
    body = await _parse(request, TextEmbeddingRequest())
    return json_response(render(core.embed(body, _folder(request))))


async def _iam_token(request: web.Request) -> web.StreamResponse:
    """The IAM endpoint answers in the generic Yandex Cloud API error format."""
    core = request.app[CORE_KEY]
    core.stats.iam_token_requests += 1
    try:
        body = await read_json_object(request, "Syntax error")
        return json_response(core.iam.exchange(body))
    except EmulatedApiError as error:
        grpc_code, _, default_message = ERRORS.get(error.status, ERRORS[500])
        payload = {"code": grpc_code, "message": error.message or default_message, "details": []}
        return json_response(payload, error.status)


async def _echo_headers(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.headers.get("x-client-request-id")
    if request_id is not None:
        response.headers["x-client-request-id"] = request_id


def add_routes(app: web.Application) -> None:
    """Serve the Foundation Models REST API, operations and IAM tokens on ``app``."""
    app.on_response_prepare.append(_echo_headers)
    app.router.add_post(COMPLETION_PATH, _api(_completion))
    app.router.add_post(COMPLETION_ASYNC_PATH, _api(_completion_async))
    app.router.add_post(TOKENIZE_PATH, _api(_tokenize))
    app.router.add_post(TOKENIZE_COMPLETION_PATH, _api(_tokenize_completion))
    app.router.add_post(EMBEDDING_PATH, _api(_text_embedding))
    app.router.add_get(OPERATION_PATH, _api(_operation))
    app.router.add_post(OPERATION_PATH + ":cancel", _api(_cancel_operation))
    app.router.add_post(IAM_TOKENS_PATH, _iam_token)
