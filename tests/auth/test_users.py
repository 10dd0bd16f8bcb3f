from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from tests.auth.conftest import AuthServer
from xrouter.auth.users import UserError
from xrouter.storage.models import User


async def test_create_and_authenticate(server: AuthServer) -> None:
    user = await server.users.create("  Bob@Example.COM ", "a long enough password", is_admin=True)
    assert user.email == "bob@example.com"
    assert user.is_admin
    assert await server.users.authenticate("BOB@example.com", "a long enough password") == user
    assert await server.users.authenticate("bob@example.com", "wrong password!") is None
    assert await server.users.authenticate("nobody@example.com", "a long enough password") is None
    async with server.sessions() as session:
        row = (await session.scalars(select(User))).one()
    assert row.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in row.password_hash


@pytest.mark.parametrize(
    ("email", "password", "param"),
    [
        ("not-an-email", "a long enough password", "email"),
        ("a@b", "a long enough password", "email"),
        ("ok@example.com", "short", "password"),
        ("ok@example.com", "x" * 1025, "password"),
    ],
)
async def test_bad_input_is_refused(
    server: AuthServer, email: str, password: str, param: str
) -> None:
    with pytest.raises(UserError) as refused:
        await server.users.create(email, password)
    assert refused.value.param == param


async def test_emails_are_unique(server: AuthServer) -> None:
    await server.users.create("dup@example.com", "a long enough password")
    with pytest.raises(UserError, match="already exists"):
        await server.users.create("DUP@example.com", "another long password")


async def test_weak_hashes_are_upgraded_at_sign_in(server: AuthServer) -> None:
    # Made with cheaper parameters than the service's own: rehashed on the next sign-in.
    weaker = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1)
    user = await server.users.create("old@example.com", "a long enough password")
    async with server.sessions() as session, session.begin():
        row = await session.get(User, user.id)
        assert row is not None
        row.password_hash = weaker.hash("a long enough password")
        old_hash = row.password_hash
    assert await server.users.authenticate("old@example.com", "a long enough password") == user
    async with server.sessions() as session:
        row = await session.get(User, user.id)
        assert row is not None
        assert row.password_hash != old_hash
