"""User accounts: the repository (every query on ``users``) and the service on top of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.passwords import Passwords
from xrouter.errors import InvalidRequestError
from xrouter.storage.models import User, new_id, utc_now

USER_ID_PREFIX = "usr_"
# Deliberately loose: one "@", no spaces, a dot in the domain. Real validation is delivery.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class UserError(InvalidRequestError):
    """A user cannot be created as asked (bad email, weak password, email taken)."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What may be shown about a user: never the password hash."""

    id: str
    email: str
    is_admin: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: User) -> UserInfo:
        return cls(id=row.id, email=row.email, is_admin=row.is_admin, created_at=row.created_at)


def normalise_email(email: str) -> str:
    """The stored form of an email address: trimmed and lower case."""
    return email.strip().lower()


class UserRepository:
    """Reads and writes ``users`` rows through one session; the caller owns the transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, email: str, password_hash: str, *, is_admin: bool) -> User:
        now = utc_now()
        user = User(
            id=new_id(USER_ID_PREFIX),
            email=email,
            password_hash=password_hash,
            is_admin=is_admin,
            created_at=now,
            updated_at=now,
            disabled_at=None,
        )
        self._session.add(user)
        await self._session.flush()
        return user

    async def get(self, user_id: str) -> User | None:
        return await self._session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        return await self._session.scalar(select(User).where(User.email == email))

    async def count(self) -> int:
        return int(await self._session.scalar(select(func.count()).select_from(User)) or 0)

    async def list(self) -> list[User]:
        """Every user, oldest first."""
        return list(await self._session.scalars(select(User).order_by(User.created_at, User.id)))


class UserService:
    """Creating users and checking their passwords, each call in its own transaction."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], passwords: Passwords
    ) -> None:
        self._sessions = session_factory
        self._passwords = passwords

    async def create(self, email: str, password: str, *, is_admin: bool = False) -> UserInfo:
        """Create a user; ``UserError`` for a malformed email, weak password or taken email."""
        email = normalise_email(email)
        if not _EMAIL.match(email) or len(email) > 320:
            raise UserError(f"'{email}' is not an email address.", param="email")
        try:
            Passwords.check_strength(password)
        except ValueError as error:
            raise UserError(str(error), param="password") from None
        password_hash = await self._passwords.hash(password)
        try:
            async with self._sessions() as session, session.begin():
                row = await UserRepository(session).add(email, password_hash, is_admin=is_admin)
        except IntegrityError:
            raise UserError(f"A user with email '{email}' already exists.", param="email") from None
        return UserInfo.from_row(row)

    async def authenticate(self, email: str, password: str) -> UserInfo | None:
        """The user whose email and password these are, or None (same work either way)."""
        async with self._sessions() as session:
            row = await UserRepository(session).by_email(normalise_email(email))
        if row is None or row.disabled_at is not None:
            await self._passwords.verify_unknown(password)
            return None
        if not await self._passwords.verify(row.password_hash, password):
            return None
        if self._passwords.needs_rehash(row.password_hash):
            await self._rehash(row.id, password)
        return UserInfo.from_row(row)

    async def get(self, user_id: str) -> UserInfo | None:
        """An active user by id."""
        async with self._sessions() as session:
            row = await UserRepository(session).get(user_id)
        if row is None or row.disabled_at is not None:
            return None
        return UserInfo.from_row(row)

    async def list(self) -> list[tuple[UserInfo, bool]]:
        """Every user with whether they are disabled, oldest first."""
        async with self._sessions() as session:
            rows = await UserRepository(session).list()
            return [(UserInfo.from_row(row), row.disabled_at is not None) for row in rows]

    async def set_flags(
        self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None
    ) -> tuple[UserInfo, bool] | None:
        """Disable or enable a user, or change whether they administer; None if unknown."""
        async with self._sessions() as session, session.begin():
            row = await UserRepository(session).get(user_id)
            if row is None:
                return None
            if disabled is not None and disabled != (row.disabled_at is not None):
                row.disabled_at = utc_now() if disabled else None
            if is_admin is not None:
                row.is_admin = is_admin
            row.updated_at = utc_now()
            return UserInfo.from_row(row), row.disabled_at is not None

    async def _rehash(self, user_id: str, password: str) -> None:
        new_hash = await self._passwords.hash(password)
        async with self._sessions() as session, session.begin():
            row = await UserRepository(session).get(user_id)
            if row is not None:
                row.password_hash = new_hash
                row.updated_at = utc_now()
