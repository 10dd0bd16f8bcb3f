"""Authorization codes: random, single-use, short-lived; only their SHA-256 is stored.

A code is consumed by one conditional ``UPDATE ... WHERE used_at IS NULL``: the database, not a
lock in this process, decides which of two concurrent exchanges wins, so it holds across
processes and instances. The same statement checks the client, the redirect URI and expiry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from xrouter.storage.models import AuthorizationCode, utc_now

CODE_BYTES = 32
# Written into ``api_key_id`` by a replay of an OpenRouter-flow code.
REPLAYED = "replayed"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewCode:
    """What a code is issued for."""

    user_id: str
    client_id: str | None
    redirect_uri: str
    code_challenge: str
    code_challenge_method: str
    scope: str
    app_name: str | None = None


@dataclass(frozen=True, slots=True)
class ConsumedCode:
    """A code this exchange won."""

    code_hash: str
    user_id: str
    client_id: str | None
    code_challenge: str
    code_challenge_method: str
    scope: str
    app_name: str | None


class CodeRepository:
    """Queries on ``oauth_codes``; the caller owns the transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, new: NewCode, lifetime: timedelta) -> str:
        """Store a new code and return it (the only time it exists in clear)."""
        code = secrets.token_urlsafe(CODE_BYTES)
        now = utc_now()
        self._session.add(
            AuthorizationCode(
                code_hash=hash_code(code),
                client_id=new.client_id,
                user_id=new.user_id,
                redirect_uri=new.redirect_uri,
                app_name=new.app_name,
                code_challenge=new.code_challenge,
                code_challenge_method=new.code_challenge_method,
                scope=new.scope,
                created_at=now,
                expires_at=now + lifetime,
                used_at=None,
                api_key_id=None,
            )
        )
        await self._session.flush()
        # Expired and used codes are of no use to anyone: keep the table small.
        await self._session.execute(
            delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - timedelta(days=1))
        )
        return code

    async def consume(
        self, code_hash: str, client_id: str | None, redirect_uri: str | None
    ) -> ConsumedCode | None:
        """Mark the code used if it is unused, unexpired and issued for this client (and
        redirect URI, when given); None if this exchange did not win it."""
        now = utc_now()
        table = AuthorizationCode
        conditions = [
            table.code_hash == code_hash,
            table.used_at.is_(None),
            table.expires_at > now,
            table.client_id.is_(None) if client_id is None else table.client_id == client_id,
        ]
        if redirect_uri is not None:
            conditions.append(table.redirect_uri == redirect_uri)
        statement = (
            update(table)
            .where(*conditions)
            .values(used_at=now)
            .returning(
                table.user_id,
                table.client_id,
                table.code_challenge,
                table.code_challenge_method,
                table.scope,
                table.app_name,
            )
            .execution_options(synchronize_session=False)
        )
        row = (await self._session.execute(statement)).first()
        if row is None:
            return None
        return ConsumedCode(code_hash, *row)

    async def get(self, code_hash: str) -> AuthorizationCode | None:
        """The code's row as it is now (to explain why an exchange failed)."""
        result = await self._session.execute(
            select(AuthorizationCode)
            .where(AuthorizationCode.code_hash == code_hash)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def claim_api_key(self, code_hash: str, api_key_id: str) -> str | None:
        """Record the API key made from a code, unless a replay got there first.

        Both the exchange that won the code and any later replay write ``api_key_id`` with the
        same conditional update: the replay writes ``REPLAYED``. Whichever comes second reads the
        other's value back: the winner learns its key must be revoked, the replay learns which
        key to revoke. Returns the value already there, or None when this write won.
        """
        table = AuthorizationCode
        result = await self._session.execute(
            update(table)
            .where(table.code_hash == code_hash, table.api_key_id.is_(None))
            .values(api_key_id=api_key_id)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount == 1:
            return None
        existing = await self._session.scalar(
            select(table.api_key_id).where(table.code_hash == code_hash)
        )
        return existing or REPLAYED


def describe_failure(row: AuthorizationCode | None, client_id: str | None, now: datetime) -> str:
    """Why a code could not be consumed, for ``error_description`` (never reveals more than
    the caller already holds)."""
    if row is None:
        return "The authorization code is unknown."
    if row.used_at is not None:
        return "The authorization code was already used; tokens issued from it are revoked."
    if row.client_id != client_id:
        return "The authorization code was issued to another client."
    if row.expires_at <= now:
        return "The authorization code has expired."
    return "redirect_uri does not match the one in the authorization request."
