"""How an upstream HTTP status becomes the error a client sees, the same for every provider.

Provider modules extract the upstream's message from their own error body and call
``upstream_status_error``. Messages from 401/403 answers are never shown: they can echo the
gateway's own credentials.
"""

from __future__ import annotations

from typing import NamedTuple

from xrouter.errors import UpstreamError


class _Mapping(NamedTuple):
    status: int
    error_type: str
    code: str
    retryable: bool
    show_message: bool


_BY_STATUS: dict[int, _Mapping] = {
    400: _Mapping(400, "invalid_request_error", "upstream_bad_request", False, True),
    401: _Mapping(502, "upstream_error", "upstream_auth_failed", False, False),
    402: _Mapping(402, "insufficient_quota", "insufficient_quota", True, False),
    403: _Mapping(502, "upstream_error", "upstream_permission_denied", True, False),
    404: _Mapping(404, "invalid_request_error", "model_not_found", False, True),
    408: _Mapping(504, "upstream_error", "upstream_timeout", True, True),
    413: _Mapping(413, "invalid_request_error", "request_too_large", False, True),
    422: _Mapping(400, "invalid_request_error", "upstream_invalid_params", False, True),
    429: _Mapping(429, "rate_limit_error", "upstream_rate_limited", True, True),
    504: _Mapping(504, "upstream_error", "upstream_timeout", True, True),
}
_SERVER_ERROR = _Mapping(502, "upstream_error", "upstream_server_error", True, True)
_OTHER_CLIENT_ERROR = _Mapping(502, "upstream_error", "upstream_error", False, True)

_HEADLINES = {
    401: "{provider} refused the gateway's credentials; an operator must check them.",
    402: "The gateway's {provider} account is out of tokens.",
    403: "The gateway's {provider} account is not permitted to use this model.",
    429: "{provider} is rate limiting the gateway",
}


def upstream_status_error(
    provider: str,
    status: int,
    upstream_message: str | None,
    retry_after: float | None,
    param: str | None = None,
) -> UpstreamError:
    """Build the client-facing error for a non-2xx upstream answer."""
    if status in _BY_STATUS:
        mapping = _BY_STATUS[status]
    elif status >= 500:
        mapping = _SERVER_ERROR
    else:
        mapping = _OTHER_CLIENT_ERROR
    headline = _HEADLINES.get(status, "{provider} answered HTTP {status}").format(
        provider=provider, status=status
    )
    message = headline
    if mapping.show_message and upstream_message:
        message = f"{headline}: {_clip(upstream_message)}"
    elif not message.endswith("."):
        message += "."
    return UpstreamError(
        message,
        provider=provider,
        status=mapping.status,
        retryable=mapping.retryable,
        retry_after=retry_after,
        param=param,
        code=mapping.code,
        error_type=mapping.error_type,
    )


def malformed_response(provider: str, what: str) -> UpstreamError:
    """The upstream answered 2xx with something that is not its protocol."""
    return UpstreamError(
        f"{provider} sent a malformed response ({what}).",
        provider=provider,
        status=502,
        retryable=True,
        code="upstream_malformed_response",
    )


def truncated_stream(provider: str) -> UpstreamError:
    """The upstream closed a stream before its final event."""
    return UpstreamError(
        f"{provider} ended the stream before it was complete.",
        provider=provider,
        status=502,
        retryable=True,
        code="upstream_truncated_stream",
    )


def text_message(body: bytes) -> str | None:
    """An error body that is not JSON, as the message to show: plain text is the provider's
    own words; markup (a proxy's or load balancer's HTML page) is not shown to clients."""
    text = body.decode("utf-8", "replace")[:200].strip()
    if not text or text.startswith("<"):
        return None
    return text


def _clip(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
