"""Typed gateway errors. Each knows its HTTP status and renders as an OpenAI error body."""

from __future__ import annotations

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class GatewayError(Exception):
    """Base of every error a client may see. Subclasses fix status and OpenAI error type."""

    status: int = 500
    error_type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(ErrorDetail(self.message, self.error_type, self.param, self.code))

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body())


class InvalidRequestError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class UnprocessableEntityError(InvalidRequestError):
    status = 422


class AuthenticationError(GatewayError):
    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    error_type = "permission_error"


class NotFoundError(GatewayError):
    status = 404
    error_type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"

    def __init__(self, model: str, reason: str = "does not exist") -> None:
        super().__init__(f"The model '{model}' {reason}.", param="model")


class MethodNotAllowedError(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeoutError(GatewayError):
    status = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimitError(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """A provider failed. ``retryable`` tells the routing layer whether another try may help."""

    status = 502
    error_type = "upstream_error"
    default_code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
    ) -> None:
        headers = {"retry-after": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(message, param=param, code=code, headers=headers)
        self.provider = provider
        self.retryable = retryable
        self.retry_after = retry_after
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
