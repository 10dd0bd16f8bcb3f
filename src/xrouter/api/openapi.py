"""Describe the ``/v1`` endpoints in the control plane's OpenAPI document.

They are plain ASGI handlers, not FastAPI routes, so their schemas come from the msgspec
structs that decode and encode them: the document cannot drift from the wire format.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from xrouter.errors import ErrorBody
from xrouter.gateway.anthropic.wire import (
    AnthropicErrorBody,
    AnthropicMessage,
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
)
from xrouter.gateway.responses.wire import ResponseObject, ResponsesRequest
from xrouter.gateway.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ModelCard,
    ModelList,
)

_REF = "#/components/schemas/{name}"
_ERROR_STATUSES = {
    "400": "Invalid request (the error names the parameter)",
    "401": "Missing, malformed, unknown or revoked API key",
    "404": "Unknown model",
    "413": "Request body too large",
    "415": "Body is not JSON",
    "429": "Rate limited (by the gateway or the provider)",
    "502": "The provider failed or answered malformed data",
    "504": "The provider did not answer in time",
}


def _ref(struct: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=struct.__name__)}


def _errors() -> dict[str, Any]:
    return {
        status: {"description": text, "content": {"application/json": {"schema": _ref(ErrorBody)}}}
        for status, text in _ERROR_STATUSES.items()
    }


def gateway_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAPI paths and component schemas of the ``/v1`` endpoints."""
    structs = [
        ChatCompletionRequest,
        ChatCompletion,
        ChatCompletionChunk,
        EmbeddingsRequest,
        EmbeddingsResponse,
        ModelCard,
        ModelList,
        ErrorBody,
        *_TRANSLATED_STRUCTS,
    ]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": {
                "tags": ["gateway"],
                "summary": "Create a chat completion (JSON, or SSE with stream=true)",
                "operationId": "createChatCompletion",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(ChatCompletionRequest)}},
                },
                "responses": {
                    "200": {
                        "description": "The completion; with stream=true, a text/event-stream "
                        "of ChatCompletionChunk objects ending with 'data: [DONE]'",
                        "content": {
                            "application/json": {"schema": _ref(ChatCompletion)},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(),
                },
            }
        },
        "/v1/embeddings": {
            "post": {
                "tags": ["gateway"],
                "summary": "Create embeddings",
                "operationId": "createEmbeddings",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(EmbeddingsRequest)}},
                },
                "responses": {
                    "200": {
                        "description": "The vectors, in input order",
                        "content": {"application/json": {"schema": _ref(EmbeddingsResponse)}},
                    },
                    **_errors(),
                },
            }
        },
        "/v1/models": {
            "get": {
                "tags": ["gateway"],
                "summary": "List the models of every enabled provider",
                "operationId": "listModels",
                "security": security,
                "responses": {
                    "200": {
                        "description": "The models",
                        "content": {"application/json": {"schema": _ref(ModelList)}},
                    },
                    "401": _errors()["401"],
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "tags": ["gateway"],
                "summary": "Retrieve one model, as /v1/models lists it",
                "operationId": "retrieveModel",
                "security": security,
                "parameters": [
                    {
                        "name": "model",
                        "in": "path",
                        "required": True,
                        "description": "The model id, such as gigachat/GigaChat-2-Max or "
                        "yandex/yandexgpt:rc; its '/' may be sent as is or as %2F",
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The model",
                        "content": {"application/json": {"schema": _ref(ModelCard)}},
                    },
                    "401": _errors()["401"],
                    "404": _errors()["404"],
                },
            }
        },
    }
    paths.update(_translated_paths(security))
    return paths, components


_TRANSLATED_STRUCTS = [
    MessagesRequest,
    AnthropicMessage,
    CountTokensRequest,
    TokenCount,
    AnthropicErrorBody,
    ResponsesRequest,
    ResponseObject,
]


def _operation(
    summary: str,
    operation_id: str,
    request: type,
    response: type,
    description: str,
    errors: dict[str, Any],
    security: list[dict[str, list[str]]],
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(response)}}
    if "stream" in description:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "tags": ["gateway"],
            "summary": summary,
            "operationId": operation_id,
            "security": security,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(request)}},
            },
            "responses": {"200": {"description": description, "content": content}, **errors},
        }
    }


def _translated_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The Anthropic Messages and OpenAI Responses endpoints, served over the chat pipeline."""
    anthropic_errors = {
        status: {
            "description": text,
            "content": {"application/json": {"schema": _ref(AnthropicErrorBody)}},
        }
        for status, text in {**_ERROR_STATUSES, "500": "The provider failed"}.items()
        if status not in {"415", "502"}
    }
    anthropic_security: list[dict[str, list[str]]] = [*security, {"apiKeyAuth": []}]
    return {
        "/v1/messages": _operation(
            "Create a message (Anthropic Messages API; SSE events with stream=true)",
            "createMessage",
            MessagesRequest,
            AnthropicMessage,
            "The message; with stream=true, Anthropic's event stream (message_start ... "
            "message_stop)",
            anthropic_errors,
            anthropic_security,
        ),
        "/v1/messages/count_tokens": _operation(
            "Count a message's input tokens with the provider's tokenizer",
            "countMessageTokens",
            CountTokensRequest,
            TokenCount,
            "The input token count",
            anthropic_errors,
            anthropic_security,
        ),
        "/v1/responses": _operation(
            "Create a response (OpenAI Responses API; SSE events with stream=true)",
            "createResponse",
            ResponsesRequest,
            ResponseObject,
            "The response; with stream=true, the Responses event stream (response.created ... "
            "response.completed)",
            _errors(),
            security,
        ),
    }


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the gateway endpoints and the bearer scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            paths, components = gateway_paths()
            schema["paths"] = {**paths, **schema.get("paths", {})}
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(components)
            schema["components"]["securitySchemes"] = {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "sk-xr-v1-... API key",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "sk-xr-v1-... API key, as Anthropic clients send it",
                },
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
