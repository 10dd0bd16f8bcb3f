"""Gateway errors in Anthropic's shape and with Anthropic's statuses, so Anthropic SDKs raise
their usual typed exceptions and clients such as Claude Code retry what Anthropic retries."""

from __future__ import annotations

import re

from starlette.responses import Response

from xrouter.errors import GatewayError
from xrouter.gateway.anthropic.wire import ENCODER, AnthropicErrorBody, AnthropicErrorDetail
from xrouter.gateway.http import JSON_MEDIA_TYPE

# The gateway's status -> Anthropic's (status, error type). Anthropic documents 400, 401, 402,
# 403, 404, 413, 429, 500, 504 and 529 (overloaded); the gateway's other statuses are sent as
# the nearest of those.
_STATUSES: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    # A provider failure: Anthropic's own upstream trouble is its generic 500.
    502: (500, "api_error"),
    # The gateway cannot take the request now (for example its limit store is down).
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}


def anthropic_status(error: GatewayError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type for ``error``."""
    mapped = _STATUSES.get(error.status)
    if mapped is not None:
        return mapped
    if error.status < 500:
        return 400, "invalid_request_error"
    return 500, "api_error"


def error_body(error: GatewayError) -> AnthropicErrorBody:
    _, kind = anthropic_status(error)
    message = error.message
    if error.param is not None and not _names(message, error.param):
        message = f"{error.param}: {message}"
    return AnthropicErrorBody(AnthropicErrorDetail(kind, message))


def _names(message: str, param: str) -> bool:
    """Whether ``message`` already names ``param`` (quoted or as a word of its own)."""
    return re.search(rf"(?<![\w.\[]){re.escape(param)}(?![\w\]])", message) is not None


def error_response(error: GatewayError) -> Response:
    status, _ = anthropic_status(error)
    return Response(ENCODER.encode(error_body(error)), status, error.headers, JSON_MEDIA_TYPE)
