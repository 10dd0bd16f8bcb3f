"""The authorization server's parts, built once per worker from the settings."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.clients import ClientService
from xrouter.auth.grants import AuthorizationService
from xrouter.auth.openrouter import OpenRouterKeyFlow
from xrouter.auth.passwords import Passwords
from xrouter.auth.rate_limit import LoginRateLimiter
from xrouter.auth.revocation import Denylist, RevocationFeed
from xrouter.auth.sessions import UiSessions
from xrouter.auth.signing_keys import SigningKeys
from xrouter.auth.tokens import AccessTokens
from xrouter.auth.users import UserService
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import KeyService
from xrouter.redis_url import RedisClient
from xrouter.settings import Settings


@dataclass
class AuthComponents:
    """Everything the OAuth endpoints, the UI and the gateway's token check use."""

    users: UserService
    clients: ClientService
    ui_sessions: UiSessions
    login_limiter: LoginRateLimiter
    signing_keys: SigningKeys
    tokens: AccessTokens
    revocations: RevocationFeed
    grants: AuthorizationService
    openrouter: OpenRouterKeyFlow


async def start_auth(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    pepper: bytes,
    redis_client: RedisClient | None,
    key_service: KeyService,
    stack: AsyncExitStack,
) -> AuthComponents:
    """Load (or create) the signing keys and the denylist; register their shutdown on ``stack``."""
    lifetime = timedelta(seconds=settings.oauth_access_token_ttl_seconds)
    code_lifetime = timedelta(seconds=settings.oauth_code_ttl_seconds)
    users = UserService(sessions, Passwords())
    signing_keys = SigningKeys(
        sessions,
        pepper,
        rotation=timedelta(days=settings.oauth_signing_key_rotation_days),
        token_lifetime=lifetime,
    )
    await signing_keys.start()
    stack.push_async_callback(signing_keys.close)
    denylist = Denylist()
    revocations = RevocationFeed(
        sessions, denylist, redis_client, settings.oauth_revocation_poll_seconds
    )
    await revocations.start()
    stack.push_async_callback(revocations.close)
    tokens = AccessTokens(
        signing_keys,
        denylist,
        issuer=settings.issuer,
        audience=settings.audience,
        lifetime_seconds=settings.oauth_access_token_ttl_seconds,
        cache_size=settings.oauth_token_cache_size,
    )
    return AuthComponents(
        users=users,
        clients=ClientService(sessions, KeyHasher(pepper), signing_keys),
        ui_sessions=UiSessions(
            sessions,
            users,
            pepper,
            lifetime=timedelta(hours=settings.ui_session_hours),
            secure_cookies=settings.cookie_secure,
        ),
        login_limiter=LoginRateLimiter(
            per_account=settings.login_attempts_per_account,
            per_ip=settings.login_attempts_per_ip,
            window_seconds=settings.login_attempt_window_seconds,
            redis_client=redis_client,
        ),
        signing_keys=signing_keys,
        tokens=tokens,
        revocations=revocations,
        grants=AuthorizationService(sessions, tokens, revocations, code_lifetime=code_lifetime),
        openrouter=OpenRouterKeyFlow(sessions, key_service, code_lifetime=code_lifetime),
    )
