"""The OpenRouter-compatible key flow: an app sends the user to ``/auth`` with a callback URL
and a PKCE challenge, and trades the code it gets back for a normal XRouter API key owned by the
user. No client registration: the callback URL (https, or http on loopback) names the app and is
shown on the consent page. PKCE and single use work exactly as in the OAuth flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.clients import is_loopback_host
from xrouter.auth.codes import REPLAYED, CodeRepository, NewCode, describe_failure, hash_code
from xrouter.auth.oauth_errors import invalid_grant, invalid_request
from xrouter.auth.pkce import S256, PkceError, check_verifier, verifier_matches
from xrouter.auth.scopes import INFERENCE
from xrouter.keys.service import CreatedKey, KeyService
from xrouter.storage.models import utc_now

MAX_CALLBACK_LENGTH = 2000
APP_LABEL_PREFIX = "App at "


class CallbackError(ValueError):
    """The callback URL is not one XRouter will send a code to."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """The response of ``POST /api/v1/auth/keys``."""

    created: CreatedKey
    user_id: str


def check_callback_url(url: str | None) -> str:
    """The callback URL if it is absolute https, or http on a loopback host, without fragment."""
    if not url:
        raise CallbackError("callback_url is required.")
    if len(url) > MAX_CALLBACK_LENGTH:
        raise CallbackError("callback_url is too long.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise CallbackError("callback_url is not a valid URL.") from None
    if parts.fragment or "#" in url or parts.username or parts.password:
        raise CallbackError("callback_url must not contain a fragment or credentials.")
    scheme = parts.scheme.lower()
    if host and (scheme == "https" or (scheme == "http" and is_loopback_host(host))):
        return url
    raise CallbackError("callback_url must use https, or http on localhost / a loopback address.")


def app_label(callback_url: str) -> str:
    """The name the new key gets: ``App at`` and the app's origin."""
    parts = urlsplit(callback_url)
    return f"{APP_LABEL_PREFIX}{parts.scheme}://{parts.netloc}"[:200]


class OpenRouterKeyFlow:
    """Issues codes for ``/auth`` and exchanges them for API keys."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        keys: KeyService,
        *,
        code_lifetime: timedelta,
    ) -> None:
        self._sessions = session_factory
        self._keys = keys
        self._code_lifetime = code_lifetime

    async def issue_code(self, user_id: str, callback_url: str, challenge: str) -> str:
        new = NewCode(
            user_id=user_id,
            client_id=None,
            redirect_uri=callback_url,
            code_challenge=challenge,
            code_challenge_method=S256,
            scope=INFERENCE,
            app_name=app_label(callback_url),
        )
        async with self._sessions() as session, session.begin():
            return await CodeRepository(session).add(new, self._code_lifetime)

    async def exchange(self, code: str, verifier: str | None, method: str | None) -> IssuedKey:
        """A new API key for the code's user; ``OAuthError`` as the token endpoint would."""
        if method is not None and method != S256:
            raise invalid_request(
                f"code_challenge_method '{method[:20]}' is not supported; use S256."
            )
        try:
            check_verifier(verifier)
        except PkceError as error:
            raise invalid_request(str(error)) from None
        assert verifier is not None
        code_hash = hash_code(code)
        async with self._sessions() as session, session.begin():
            consumed = await CodeRepository(session).consume(code_hash, None, None)
        if consumed is not None:
            if not verifier_matches(
                verifier, consumed.code_challenge, consumed.code_challenge_method
            ):
                raise invalid_grant("code_verifier does not match the code_challenge.")
            label = consumed.app_name or "App"
            # The key is marked with the app's origin, so the apps page lists it with the app.
            created = await self._keys.create(
                label, owner=consumed.user_id, created_by_app=label.removeprefix(APP_LABEL_PREFIX)
            )
            async with self._sessions() as session, session.begin():
                earlier = await CodeRepository(session).claim_api_key(code_hash, created.info.id)
            if earlier is not None:
                await self._keys.revoke(created.info.id)
                raise invalid_grant("The authorization code was used twice; its key is revoked.")
            return IssuedKey(created, consumed.user_id)
        async with self._sessions() as session, session.begin():
            repository = CodeRepository(session)
            row = await repository.get(code_hash)
            issued = None
            if row is not None and row.used_at is not None:
                issued = await repository.claim_api_key(code_hash, REPLAYED)
        if issued is not None and issued != REPLAYED:
            await self._keys.revoke(issued)
        raise invalid_grant(describe_failure(row, None, utc_now()))
