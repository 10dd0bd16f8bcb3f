"""Creating, listing and revoking API keys (the control plane; never on the proxied path)."""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.errors import InvalidRequestError, NotFoundError
from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import display_prefix, generate_key
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.repository import ApiKeyRepository
from xrouter.storage.models import ApiKey

MAX_NAME_LENGTH = 200
# The limit columns are 32-bit integers on every database.
MAX_LIMIT = 2**31 - 1


class KeyNotFoundError(NotFoundError):
    """No API key has the given id."""

    default_code = "key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id '{key_id}'.", param="id")
        self.key_id = key_id


class InvalidKeyNameError(InvalidRequestError):
    """A key name is empty or too long."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="name")


class Unchanged(enum.Enum):
    """Marks a limit ``KeyService.update_limits`` leaves as it is."""

    UNCHANGED = enum.auto()


UNCHANGED = Unchanged.UNCHANGED


class InvalidKeyLimitError(InvalidRequestError):
    """A per-key rate limit is not a positive integer."""

    def __init__(self, param: str, value: int) -> None:
        super().__init__(
            f"The {param} limit must be between 1 and {MAX_LIMIT} (got {value}).", param=param
        )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its secret, never its digest."""

    id: str
    name: str
    prefix: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    # Per-key limits (None: the configured default applies).
    rpm: int | None = None
    tpm: int | None = None
    tpd: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyInfo:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            owner=row.owner,
            created_at=row.created_at,
            updated_at=row.updated_at,
            revoked_at=row.revoked_at,
            rpm=row.rpm,
            tpm=row.tpm,
            tpd=row.tpd,
        )


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``key`` is the secret, available this once (kept out of the repr)."""

    key: str = field(repr=False)
    info: KeyInfo


class KeyService:
    """Key operations, each in its own transaction.

    With a ``cache`` (the gateway's own ``KeyCache``), changes reach it at once instead of on
    its next refresh.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        hasher: KeyHasher,
        cache: KeyCache | None = None,
    ) -> None:
        self._sessions = session_factory
        self._hasher = hasher
        self._cache = cache

    async def create(
        self,
        name: str,
        owner: str | None = None,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tpd: int | None = None,
    ) -> CreatedKey:
        """Create a key named ``name``; the returned secret is not stored anywhere.

        ``rpm``, ``tpm`` and ``tpd`` are its requests-per-minute, tokens-per-minute and
        tokens-per-day limits; None leaves the configured default in force.
        """
        name = _valid_name(name)
        _check_limits(rpm=rpm, tpm=tpm, tpd=tpd)
        secret = generate_key()
        digest = self._hasher.digest(secret)
        async with self._sessions() as session, session.begin():
            row = await ApiKeyRepository(session).create(
                name=name,
                prefix=display_prefix(secret),
                secret_hash=digest,
                owner=owner,
                rpm=rpm,
                tpm=tpm,
                tpd=tpd,
            )
            info = KeyInfo.from_row(row)
        if self._cache is not None:
            self._cache.put(ActiveKey.from_row(row), row.secret_hash)
        return CreatedKey(key=secret, info=info)

    async def list(self) -> builtins.list[KeyInfo]:
        """Every key, oldest first, revoked ones included."""
        async with self._sessions() as session:
            rows = await ApiKeyRepository(session).list()
            return [KeyInfo.from_row(row) for row in rows]

    async def update_limits(
        self,
        key_id: str,
        *,
        rpm: int | Unchanged | None = UNCHANGED,
        tpm: int | Unchanged | None = UNCHANGED,
        tpd: int | Unchanged | None = UNCHANGED,
    ) -> KeyInfo:
        """Change some of a key's limits (None: back to the configured default; ``UNCHANGED``
        keeps the current value). Other instances pick the change up on their next key-cache
        refresh; raise ``KeyNotFoundError`` for an unknown id."""
        async with self._sessions() as session, session.begin():
            repository = ApiKeyRepository(session)
            row = await repository.get(key_id)
            if row is None:
                raise KeyNotFoundError(key_id)
            new_rpm = row.rpm if isinstance(rpm, Unchanged) else rpm
            new_tpm = row.tpm if isinstance(tpm, Unchanged) else tpm
            new_tpd = row.tpd if isinstance(tpd, Unchanged) else tpd
            _check_limits(rpm=new_rpm, tpm=new_tpm, tpd=new_tpd)
            row = await repository.set_limits(row, rpm=new_rpm, tpm=new_tpm, tpd=new_tpd)
            info = KeyInfo.from_row(row)
        if self._cache is not None and row.revoked_at is None:
            self._cache.put(ActiveKey.from_row(row), row.secret_hash)
        return info

    async def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key (idempotent); raise ``KeyNotFoundError`` for an unknown id."""
        async with self._sessions() as session, session.begin():
            repository = ApiKeyRepository(session)
            row = await repository.get(key_id)
            if row is None:
                raise KeyNotFoundError(key_id)
            info = KeyInfo.from_row(await repository.revoke(row))
        if self._cache is not None:
            self._cache.drop(key_id)
        return info


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidKeyNameError("The key name must not be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidKeyNameError(f"The key name must be at most {MAX_NAME_LENGTH} characters.")
    return name


def _check_limits(**limits: int | None) -> None:
    for param, value in limits.items():
        if value is not None and not 1 <= value <= MAX_LIMIT:
            raise InvalidKeyLimitError(param, value)
