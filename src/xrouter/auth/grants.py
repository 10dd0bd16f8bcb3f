"""The authorization-code grant: codes for signed-in users, their exchange for access tokens,
revocation (RFC 7009), introspection (RFC 7662) and the apps a user has authorized."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.clients import ClientInfo
from xrouter.auth.codes import CodeRepository, NewCode, describe_failure, hash_code
from xrouter.auth.oauth_errors import OAuthError, invalid_grant, invalid_request
from xrouter.auth.pkce import PkceError, check_verifier, verifier_matches
from xrouter.auth.revocation import RevocationFeed
from xrouter.auth.scopes import scope_string
from xrouter.auth.tokens import AccessToken, AccessTokens, TokenError
from xrouter.storage.models import AccessTokenRecord, OAuthClient, User, utc_now


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A successful token response (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class AuthorizedApp:
    """A client holding live tokens for a user, for the apps page."""

    client_id: str
    name: str
    scopes: str
    first_authorized: datetime
    last_authorized: datetime
    tokens: int


class AuthorizationService:
    """Codes, tokens and revocation for OAuth clients; each method runs its own transactions."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        tokens: AccessTokens,
        feed: RevocationFeed,
        *,
        code_lifetime: timedelta,
    ) -> None:
        self._sessions = session_factory
        self.tokens = tokens
        self._feed = feed
        self._code_lifetime = code_lifetime

    async def issue_code(self, new: NewCode) -> str:
        """A new authorization code for a user who approved the request."""
        async with self._sessions() as session, session.begin():
            return await CodeRepository(session).add(new, self._code_lifetime)

    async def exchange_code(
        self, client: ClientInfo, code: str, redirect_uri: str, verifier: str
    ) -> TokenGrant:
        """Trade a code for an access token (RFC 6749 §4.1.3, RFC 7636 §4.6)."""
        try:
            check_verifier(verifier)
        except PkceError as error:
            raise invalid_request(str(error)) from None
        code_hash = hash_code(code)
        await self.tokens.prepare_signing()
        async with self._sessions() as session, session.begin():
            consumed = await CodeRepository(session).consume(code_hash, client.id, redirect_uri)
            if consumed is not None and verifier_matches(
                verifier, consumed.code_challenge, consumed.code_challenge_method
            ):
                token, claims = self.tokens.issue(
                    consumed.user_id, client.id, frozenset(consumed.scope.split())
                )
                session.add(_record(claims, code_hash))
                return TokenGrant(token, claims.expires_at - claims.issued_at, consumed.scope)
        if consumed is not None:
            # The code is spent: a wrong verifier gets no second try.
            raise invalid_grant("code_verifier does not match the code_challenge.")
        async with self._sessions() as session:
            row = await CodeRepository(session).get(code_hash)
        if row is not None and row.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice may have been stolen.
            await self.revoke_where(AccessTokenRecord.code_hash == code_hash)
        raise invalid_grant(describe_failure(row, client.id, utc_now()))

    async def revoke_token(self, client: ClientInfo, token: str) -> None:
        """RFC 7009: revoke ``token`` if it is ours, live and the client's; unknown tokens
        are not an error."""
        try:
            claims = self.tokens.verify(token)
        except TokenError:
            return
        if claims.client_id != client.id:
            raise OAuthError(
                "unauthorized_client", "The token was not issued to this client.", status=400
            )
        await self.revoke_where(AccessTokenRecord.jti == claims.jti)

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2: ``{"active": false}`` unless the token is valid right now."""
        try:
            claims = self.tokens.verify(token)
        except TokenError:
            return {"active": False}
        async with self._sessions() as session:
            row = await session.get(AccessTokenRecord, claims.jti)
            user = await session.get(User, claims.subject)
        if row is None or row.revoked_at is not None or user is None or user.disabled_at:
            return {"active": False}
        return {
            "active": True,
            "token_type": "Bearer",
            "username": user.email,
            **claims.claims(),
        }

    async def authorized_apps(self, user_id: str) -> list[AuthorizedApp]:
        """Clients holding live tokens for ``user_id``, most recently authorized first."""
        now = utc_now()
        record = AccessTokenRecord
        query = (
            select(
                record.client_id,
                OAuthClient.name,
                func.min(record.issued_at),
                func.max(record.issued_at),
                func.count(),
            )
            .join(OAuthClient, OAuthClient.id == record.client_id)
            .where(record.user_id == user_id, record.revoked_at.is_(None), record.expires_at > now)
            .group_by(record.client_id, OAuthClient.name)
        )
        async with self._sessions() as session:
            groups = (await session.execute(query)).all()
            scopes: dict[str, set[str]] = {}
            rows = await session.execute(
                select(record.client_id, record.scope).where(
                    record.user_id == user_id, record.revoked_at.is_(None), record.expires_at > now
                )
            )
            for client_id, scope in rows:
                scopes.setdefault(client_id, set()).update(scope.split())
        apps = [
            AuthorizedApp(
                client_id=client_id,
                name=name,
                scopes=scope_string(frozenset(scopes.get(client_id, ()))),
                first_authorized=_aware(first),
                last_authorized=_aware(last),
                tokens=count,
            )
            for client_id, name, first, last, count in groups
        ]
        return sorted(apps, key=lambda app: app.last_authorized, reverse=True)

    async def revoke_app(self, user_id: str, client_id: str) -> int:
        """Revoke every token ``client_id`` holds for ``user_id``; how many were live."""
        return len(
            await self.revoke_where(
                AccessTokenRecord.user_id == user_id, AccessTokenRecord.client_id == client_id
            )
        )

    async def revoke_where(self, *conditions: ColumnElement[bool]) -> list[tuple[str, float]]:
        """Revoke the live tokens matching ``conditions`` and tell every instance."""
        record = AccessTokenRecord
        statement = (
            update(record)
            .where(*conditions, record.revoked_at.is_(None))
            .values(revoked_at=utc_now())
            .returning(record.jti, record.expires_at)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions() as session, session.begin():
            rows = (await session.execute(statement)).all()
        revoked = [(jti, _aware(expires_at).timestamp()) for jti, expires_at in rows]
        await self._feed.announce(revoked)
        return revoked


def _record(claims: AccessToken, code_hash: str) -> AccessTokenRecord:
    return AccessTokenRecord(
        jti=claims.jti,
        user_id=claims.subject,
        client_id=claims.client_id,
        scope=scope_string(claims.scopes),
        code_hash=code_hash,
        issued_at=datetime.fromtimestamp(claims.issued_at, UTC),
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        revoked_at=None,
    )


def _aware(value: datetime) -> datetime:
    # Aggregates bypass the column type on SQLite and come back naive (but UTC).
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
