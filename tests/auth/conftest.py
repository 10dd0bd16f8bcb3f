"""Authorization-server parts built directly on a migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from xrouter.auth.clients import ClientInfo, ClientService
from xrouter.auth.grants import AuthorizationService
from xrouter.auth.passwords import Passwords
from xrouter.auth.revocation import Denylist, RevocationFeed
from xrouter.auth.signing_keys import SigningKeys
from xrouter.auth.tokens import AccessTokens
from xrouter.auth.users import UserInfo, UserService
from xrouter.keys.hashing import KeyHasher
from xrouter.storage.database import create_engine, session_factory

PEPPER = b"auth-test-pepper-0123456789abcdef"
ISSUER = "https://xrouter.test"
AUDIENCE = "https://xrouter.test/v1"
LIFETIME = timedelta(days=365)


def cheap_passwords() -> Passwords:
    # The production parameters cost ~64 MiB and tens of milliseconds per hash.
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@dataclass
class AuthServer:
    """One instance's worth of authorization-server parts."""

    sessions: async_sessionmaker[AsyncSession]
    keys: SigningKeys
    denylist: Denylist
    feed: RevocationFeed
    tokens: AccessTokens
    grants: AuthorizationService
    users: UserService
    clients: ClientService


async def build_server(
    sessions: async_sessionmaker[AsyncSession], stack: AsyncExitStack, *, poll: float = 0.1
) -> AuthServer:
    keys = SigningKeys(sessions, PEPPER, rotation=timedelta(days=90), token_lifetime=LIFETIME)
    await keys.start()
    stack.push_async_callback(keys.close)
    denylist = Denylist()
    feed = RevocationFeed(sessions, denylist, None, poll)
    await feed.start()
    stack.push_async_callback(feed.close)
    tokens = AccessTokens(
        keys,
        denylist,
        issuer=ISSUER,
        audience=AUDIENCE,
        lifetime_seconds=int(LIFETIME.total_seconds()),
    )
    return AuthServer(
        sessions=sessions,
        keys=keys,
        denylist=denylist,
        feed=feed,
        tokens=tokens,
        grants=AuthorizationService(sessions, tokens, feed, code_lifetime=timedelta(seconds=60)),
        users=UserService(sessions, cheap_passwords()),
        clients=ClientService(sessions, KeyHasher(PEPPER), keys),
    )


@pytest.fixture
async def server(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuthServer]:
    async with AsyncExitStack() as stack:
        yield await build_server(sessions, stack)


@pytest.fixture
async def second_server(database_url: str) -> AsyncIterator[AuthServer]:
    """Another instance on the same database, with its own engine and connection pool."""
    engine: AsyncEngine = create_engine(database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        yield await build_server(session_factory(engine), stack)


@pytest.fixture
async def user(server: AuthServer) -> UserInfo:
    return await server.users.create("alice@example.com", "a long enough password")


@pytest.fixture
async def client(server: AuthServer) -> ClientInfo:
    return (await server.clients.create("App", ["https://app.example/cb"])).info


MakeCode = Callable[..., str]
