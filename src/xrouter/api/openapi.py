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
from xrouter.gateway.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
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
        ModelList,
        ErrorBody,
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
    }
    return paths, components


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
                }
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
