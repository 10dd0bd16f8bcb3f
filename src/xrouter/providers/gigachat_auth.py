"""GigaChat credentials: the access-token cache, its three sources, and TLS settings.

A token comes from the OAuth endpoint (authorization key), from ``{base_url}/token``
(user and password), or is configured ready-made. It is refreshed shortly before it expires;
however many requests find it due at once, one refresh runs and all of them share its result.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec

from xrouter.errors import UpstreamError
from xrouter.providers.errors import malformed_response, upstream_status_error
from xrouter.providers.transport import MAX_ERROR_BODY_BYTES, parse_retry_after, transport_error

NAME = "gigachat"
# A token is renewed this long before its expiry (at most half its lifetime), so that no
# request carries a token that dies in flight.
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
# expires_at is documented in milliseconds; a value below this is read as seconds.
_MILLISECONDS_AFTER = 100_000_000_000
_CREDENTIAL_STATUSES = frozenset({400, 401, 403})


@dataclass(frozen=True, slots=True)
class GigaChatConfig:
    """Where GigaChat is and how the gateway proves who it is."""

    base_url: str
    auth_url: str
    credentials: str | None = None
    access_token: str | None = None
    user: str | None = None
    password: str | None = None
    scope: str = "GIGACHAT_API_PERS"
    ca_bundle: Path | None = None
    verify_tls: bool = True

    @property
    def can_refresh(self) -> bool:
        return bool(self.credentials or (self.user and self.password))


def build_ssl(config: GigaChatConfig) -> ssl.SSLContext | bool:
    """TLS for GigaChat: verified by default, with an extra CA bundle when one is configured."""
    if not config.verify_tls:
        return False
    if config.ca_bundle is None:
        return True
    context = ssl.create_default_context()
    # The Russian Trusted Root CA is added to, not substituted for, the system roots.
    context.load_verify_locations(cafile=str(config.ca_bundle))
    return context


class _OAuthToken(msgspec.Struct):
    access_token: str
    expires_at: int


class _PasswordToken(msgspec.Struct):
    tok: str
    exp: int


class _AuthErrorBody(msgspec.Struct):
    code: int | None = None


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # time.time() after which the token is renewed


class GigaChatTokenCache:
    """Holds the access token; concurrent requests that find it due share one refresh."""

    def __init__(
        self,
        config: GigaChatConfig,
        session: aiohttp.ClientSession,
        ssl_option: ssl.SSLContext | bool,
    ) -> None:
        self._config = config
        self._session = session
        self._ssl = ssl_option
        self._token: _Token | None = (
            _Token(config.access_token, float("inf")) if config.access_token else None
        )
        self._refreshing: asyncio.Task[_Token] | None = None

    def current(self) -> str | None:
        """The token, if it is not due for a refresh (no await on the common path)."""
        current = self._token
        if current is not None and time.time() < current.refresh_at:
            return current.value
        return None

    async def token(self) -> str:
        """A token that is valid now, refreshing it first when it is due."""
        if (current := self.current()) is not None:
            return current
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        # Shielded: a client that goes away must not cancel the refresh the others wait for.
        return (await asyncio.shield(self._refreshing)).value

    def invalidate(self, refused: str | None) -> None:
        """Forget ``refused`` after the API rejected it (a newer token is kept)."""
        if not self._config.can_refresh or self._token is None:
            return
        if refused is None or self._token.value == refused:
            self._token = None

    def _refreshed(self, task: asyncio.Task[_Token]) -> None:
        self._refreshing = None
        if task.cancelled():
            return
        if task.exception() is None:
            self._token = task.result()

    async def _refresh(self) -> _Token:
        if self._config.credentials:
            return await self._exchange(
                self._config.auth_url,
                {
                    "Authorization": f"Basic {self._config.credentials}",
                    "RqUID": str(uuid.uuid4()),
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
                {"scope": self._config.scope},
            )
        if self._config.user and self._config.password:
            pair = f"{self._config.user}:{self._config.password}".encode()
            basic = base64.b64encode(pair).decode()
            return await self._exchange(
                f"{self._config.base_url}/token",
                {"Authorization": f"Basic {basic}", "Accept": "application/json"},
                None,
            )
        # Only a ready-made token was configured, and the API has refused it.
        raise upstream_status_error(NAME, 401, None, None)

    async def _exchange(
        self, url: str, headers: dict[str, str], form: dict[str, str] | None
    ) -> _Token:
        try:
            async with self._session.post(
                url, data=form, headers=headers, ssl=self._ssl
            ) as response:
                if response.status != 200:
                    body = await response.content.read(MAX_ERROR_BODY_BYTES)
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise _refusal(response.status, body, retry_after)
                body = await response.read()
        except UpstreamError:
            raise
        except aiohttp.ClientConnectorCertificateError:
            raise UpstreamError(
                f"{NAME}'s TLS certificate could not be verified; an operator must configure "
                "its CA bundle (the Russian Trusted Root CA).",
                provider=NAME,
                status=502,
                code="upstream_tls_error",
            ) from None
        except Exception as error:
            raise transport_error(NAME, error) from error
        return _parse_token(body)


def _parse_token(body: bytes) -> _Token:
    # OAuth answers {access_token, expires_at}; /token answers {tok, exp}. The SDK takes both.
    decoded: _OAuthToken | _PasswordToken
    try:
        decoded = msgspec.json.decode(body, type=_OAuthToken)
    except msgspec.DecodeError:
        try:
            decoded = msgspec.json.decode(body, type=_PasswordToken)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "access token") from None
    if isinstance(decoded, _OAuthToken):
        value, expires_at = decoded.access_token, decoded.expires_at
    else:
        value, expires_at = decoded.tok, decoded.exp
    expires = expires_at / 1000 if expires_at >= _MILLISECONDS_AFTER else float(expires_at)
    now = time.time()
    margin = min(TOKEN_REFRESH_MARGIN_SECONDS, max(0.0, expires - now) / 2)
    return _Token(value, expires - margin)


def _refusal(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    """The token endpoint said no. Its message is never shown: it may echo the credentials."""
    if status not in _CREDENTIAL_STATUSES:
        return upstream_status_error(NAME, status, None, retry_after)
    error = upstream_status_error(NAME, 401, None, None)
    try:
        code = msgspec.json.decode(body, type=_AuthErrorBody).code
    except msgspec.DecodeError:
        code = None
    if code is not None:
        error.message = error.message.rstrip(".") + f" (token endpoint error code {code})."
    return error
