"""Web UI sign-in: a random session token in an HttpOnly cookie (only its SHA-256 is stored),
and CSRF tokens for every form.

A CSRF token is an HMAC of something only this browser holds: the session token once signed
in, before that a random per-browser cookie. An attacker's page can make the browser post a
form, but cannot read either cookie, so it cannot produce the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from starlette.responses import Response

from xrouter.auth.hkdf import hkdf_sha256
from xrouter.auth.users import UserInfo, UserService
from xrouter.storage.models import UiSession, utc_now

SESSION_COOKIE = "xrouter_session"
BROWSER_COOKIE = "xrouter_browser"
_TOKEN_BYTES = 32
_BROWSER_COOKIE_SECONDS = 30 * 86400


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class UiSessions:
    """Creates, resolves and ends UI sessions; makes and checks CSRF tokens."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        users: UserService,
        pepper: bytes,
        *,
        lifetime: timedelta,
        secure_cookies: bool | None,
    ) -> None:
        self._sessions = session_factory
        self._users = users
        self._lifetime = lifetime
        self._secure = secure_cookies
        self._csrf_key = hkdf_sha256(pepper, b"xrouter ui csrf")

    async def create(self, user_id: str) -> str:
        """Start a session for ``user_id``; the returned token goes into the cookie."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = utc_now()
        async with self._sessions() as session, session.begin():
            session.add(
                UiSession(
                    token_hash=_digest(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + self._lifetime,
                )
            )
            await session.execute(delete(UiSession).where(UiSession.expires_at < now))
        return token

    async def user(self, connection: HTTPConnection) -> UserInfo | None:
        """The signed-in user of this request, or None."""
        token = connection.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        async with self._sessions() as session:
            row = await session.get(UiSession, _digest(token))
        if row is None or row.expires_at <= utc_now():
            return None
        return await self._users.get(row.user_id)

    async def end(self, connection: HTTPConnection) -> None:
        """Forget this request's session (logout)."""
        token = connection.cookies.get(SESSION_COOKIE)
        if token:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    delete(UiSession).where(UiSession.token_hash == _digest(token))
                )

    def csrf_token(self, connection: HTTPConnection, browser_id: str | None = None) -> str:
        """The token forms of this browser must carry."""
        binding = self._binding(connection, browser_id)
        return hmac.new(self._csrf_key, binding.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, connection: HTTPConnection, submitted: str | None) -> bool:
        """Whether ``submitted`` is this browser's CSRF token (constant-time comparison)."""
        if not submitted or not self._binding(connection, None).strip(":"):
            return False
        return hmac.compare_digest(self.csrf_token(connection).encode(), submitted.encode())

    def browser_id(self, connection: HTTPConnection) -> tuple[str, bool]:
        """This browser's anonymous id and whether it is new (then set it with ``set_browser``)."""
        existing = connection.cookies.get(BROWSER_COOKIE)
        if existing and 20 <= len(existing) <= 100:
            return existing, False
        return secrets.token_urlsafe(_TOKEN_BYTES), True

    def _binding(self, connection: HTTPConnection, browser_id: str | None) -> str:
        session = connection.cookies.get(SESSION_COOKIE)
        if session:
            return "session:" + session
        return "browser:" + (browser_id or connection.cookies.get(BROWSER_COOKIE) or "")

    def secure(self, connection: HTTPConnection) -> bool:
        """Cookies are Secure when configured so, else exactly when this request used TLS."""
        return self._secure if self._secure is not None else connection.url.scheme == "https"

    def set_session(self, connection: HTTPConnection, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self._lifetime.total_seconds()),
            path="/",
            secure=self.secure(connection),
            httponly=True,
            samesite="lax",
        )

    def clear_session(self, connection: HTTPConnection, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.secure(connection), httponly=True, samesite="lax"
        )

    def set_browser(self, connection: HTTPConnection, response: Response, browser_id: str) -> None:
        response.set_cookie(
            BROWSER_COOKIE,
            browser_id,
            max_age=_BROWSER_COOKIE_SECONDS,
            path="/",
            secure=self.secure(connection),
            httponly=True,
            samesite="lax",
        )
