"""OAuth error responses (RFC 6749 §4.1.2.1 and §5.2)."""

from __future__ import annotations


class OAuthError(Exception):
    """An OAuth error: the ``error`` code, a human-readable description and the HTTP status."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    # RFC 6749 §5.2: 401, with a challenge when the client tried HTTP Basic authentication.
    headers = {"www-authenticate": 'Basic realm="xrouter"'} if basic else None
    return OAuthError("invalid_client", description, status=401, headers=headers)
