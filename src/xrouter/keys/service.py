"""Creating, changing, rotating and revoking API keys (the control plane; never on the proxied
path)."""

from __future__ import annotations

import builtins
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.errors import InvalidRequestError, NotFoundError
from xrouter.keys.cache import INFERENCE, KEY_KINDS, ActiveKey, KeyCache
from xrouter.keys.events import KeyEvents
from xrouter.keys.format import display_prefix, generate_key
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.repository import ApiKeyRepository
from xrouter.storage.models import ApiKey, utc_now

MAX_NAME_LENGTH = 200
# The limit columns are 32-bit integers on every database.
MAX_LIMIT = 2**31 - 1
MAX_BUDGET_RUB = 1e12
MAX_MODEL_PATTERNS = 100
MAX_PATTERN_LENGTH = 200
# provider/model[:version], with glob characters; or "*" alone.
_PATTERN = re.compile(r"^(\*|[A-Za-z0-9_.*?\-]+/[A-Za-z0-9_.*?:\-]+)$")


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
    kind: str = INFERENCE
    disabled: bool = False
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    allowed_models: tuple[str, ...] | None = None
    monthly_budget_rub: float | None = None
    # Prompts and completions made with the key are logged (``xrouter.content``).
    log_content: bool = False
    # The app the OpenRouter-compatible key flow issued the key to; None for other keys.
    created_by_app: str | None = None

    @property
    def active(self) -> bool:
        """Not revoked (it may still be disabled or expired: see ``status``)."""
        return self.revoked_at is None

    @property
    def status(self) -> str:
        """``revoked``, ``disabled``, ``expired`` or ``active``: whether it works right now."""
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= utc_now():
            return "expired"
        return "active"

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
            kind=row.kind or INFERENCE,
            disabled=bool(row.disabled),
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None,
            monthly_budget_rub=row.monthly_budget_rub,
            log_content=bool(row.log_content),
            created_by_app=row.created_by_app,
        )


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``key`` is the secret, available this once (kept out of the repr)."""

    key: str = field(repr=False)
    info: KeyInfo


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """What ``KeyService.update`` changes; ``UNCHANGED`` fields keep their value."""

    name: str | Unchanged = UNCHANGED
    rpm: int | Unchanged | None = UNCHANGED
    tpm: int | Unchanged | None = UNCHANGED
    tpd: int | Unchanged | None = UNCHANGED
    disabled: bool | Unchanged = UNCHANGED
    expires_at: datetime | Unchanged | None = UNCHANGED
    allowed_models: Sequence[str] | Unchanged | None = UNCHANGED
    monthly_budget_rub: float | Unchanged | None = UNCHANGED
    log_content: bool | Unchanged = UNCHANGED


class KeyService:
    """Key operations, each in its own transaction.

    With a ``cache`` (the gateway's own ``KeyCache``), changes reach it at once instead of on
    its next refresh; with ``events``, other instances' caches are woken to reload at once.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        hasher: KeyHasher,
        cache: KeyCache | None = None,
        events: KeyEvents | None = None,
    ) -> None:
        self._sessions = session_factory
        self._hasher = hasher
        self._cache = cache
        self._events = events

    async def create(
        self,
        name: str,
        owner: str | None = None,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tpd: int | None = None,
        kind: str = INFERENCE,
        expires_at: datetime | None = None,
        allowed_models: Sequence[str] | None = None,
        monthly_budget_rub: float | None = None,
        log_content: bool = False,
        created_by_app: str | None = None,
    ) -> CreatedKey:
        """Create a key named ``name``; the returned secret is not stored anywhere.

        ``rpm``, ``tpm`` and ``tpd`` are its requests-per-minute, tokens-per-minute and
        tokens-per-day limits; None leaves the configured default in force. ``kind`` is
        ``inference`` (calls /v1) or ``management`` (calls the key management API only).
        ``log_content`` opts the key in to having its prompts and completions logged.
        ``created_by_app`` names the app a key flow issued it to.
        """
        name = _valid_name(name)
        _check_limits(rpm=rpm, tpm=tpm, tpd=tpd)
        if kind not in KEY_KINDS:
            raise InvalidRequestError(
                f"The key kind must be one of: {', '.join(KEY_KINDS)}.", param="kind"
            )
        models = check_model_patterns(allowed_models)
        _check_budget(monthly_budget_rub)
        expires_at = _check_expiry(expires_at)
        secret = generate_key()
        async with self._sessions() as session, session.begin():
            row = await ApiKeyRepository(session).create(
                name=name,
                prefix=display_prefix(secret),
                secret_hash=self._hasher.digest(secret),
                owner=owner,
                rpm=rpm,
                tpm=tpm,
                tpd=tpd,
                kind=kind,
                expires_at=expires_at,
                allowed_models=models,
                monthly_budget_rub=monthly_budget_rub,
                log_content=log_content,
                created_by_app=created_by_app,
            )
            info = KeyInfo.from_row(row)
        await self._changed(row)
        return CreatedKey(key=secret, info=info)

    async def list(self, owner: str | None = None) -> builtins.list[KeyInfo]:
        """Every key (only ``owner``'s when given), oldest first, revoked ones included."""
        async with self._sessions() as session:
            rows = await ApiKeyRepository(session).list(owner)
            return [KeyInfo.from_row(row) for row in rows]

    async def get(self, key_id: str) -> KeyInfo:
        """One key by id; ``KeyNotFoundError`` for an unknown id."""
        async with self._sessions() as session:
            row = await ApiKeyRepository(session).get(key_id)
            if row is None:
                raise KeyNotFoundError(key_id)
            return KeyInfo.from_row(row)

    async def update(self, key_id: str, changes: KeyChanges) -> KeyInfo:
        """Apply ``changes`` to a key; ``KeyNotFoundError`` for an unknown id. A revoked key
        cannot change (revocation is final)."""
        async with self._sessions() as session, session.begin():
            repository = ApiKeyRepository(session)
            row = await _unrevoked(repository, key_id, "revoked keys cannot change")
            _apply(row, changes)
            row = await repository.save(row)
            info = KeyInfo.from_row(row)
        await self._changed(row)
        return info

    async def update_limits(
        self,
        key_id: str,
        *,
        rpm: int | Unchanged | None = UNCHANGED,
        tpm: int | Unchanged | None = UNCHANGED,
        tpd: int | Unchanged | None = UNCHANGED,
    ) -> KeyInfo:
        """Change some of a key's rate limits (None: back to the configured default)."""
        return await self.update(key_id, KeyChanges(rpm=rpm, tpm=tpm, tpd=tpd))

    async def rotate(self, key_id: str) -> CreatedKey:
        """Give a key a new secret; the old one stops working. Its id, settings and usage
        history stay. ``KeyNotFoundError`` for an unknown id; a revoked key cannot rotate."""
        secret = generate_key()
        async with self._sessions() as session, session.begin():
            repository = ApiKeyRepository(session)
            row = await _unrevoked(repository, key_id, "create a new one instead")
            row.secret_hash = self._hasher.digest(secret)
            row.prefix = display_prefix(secret)
            row = await repository.save(row)
            info = KeyInfo.from_row(row)
        await self._changed(row)
        return CreatedKey(key=secret, info=info)

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
        if self._events is not None:
            await self._events.announce(key_id)
        return info

    async def disable_all_of(self, owner: str) -> int:
        """Disable every key of ``owner`` (a user being disabled); how many changed."""
        async with self._sessions() as session, session.begin():
            changed = await ApiKeyRepository(session).disable_all_of(owner)
        if self._cache is not None:
            self._cache.refresh_soon()
        if self._events is not None and changed:
            await self._events.announce(owner)
        return changed

    async def _changed(self, row: ApiKey) -> None:
        if self._cache is not None and row.revoked_at is None:
            self._cache.put(ActiveKey.from_row(row), row.secret_hash)
        if self._events is not None:
            await self._events.announce(row.id)


async def _unrevoked(repository: ApiKeyRepository, key_id: str, instead: str) -> ApiKey:
    """The key's row, to change; ``KeyNotFoundError`` for an unknown id, and for a revoked
    key (revocation is final) an error whose message ends in ``instead``."""
    row = await repository.get(key_id)
    if row is None:
        raise KeyNotFoundError(key_id)
    if row.revoked_at is not None:
        raise InvalidRequestError(
            f"The key '{key_id}' is revoked; {instead}.", param="id", code="key_revoked"
        )
    return row


def _apply(row: ApiKey, changes: KeyChanges) -> None:
    if not isinstance(changes.name, Unchanged):
        row.name = _valid_name(changes.name)
    limits = {
        name: getattr(row, name) if isinstance(value, Unchanged) else value
        for name, value in (("rpm", changes.rpm), ("tpm", changes.tpm), ("tpd", changes.tpd))
    }
    _check_limits(**limits)
    row.rpm, row.tpm, row.tpd = limits["rpm"], limits["tpm"], limits["tpd"]
    if not isinstance(changes.disabled, Unchanged):
        row.disabled = changes.disabled
    if not isinstance(changes.expires_at, Unchanged):
        row.expires_at = _check_expiry(changes.expires_at)
    if not isinstance(changes.allowed_models, Unchanged):
        row.allowed_models = check_model_patterns(changes.allowed_models)
    if not isinstance(changes.monthly_budget_rub, Unchanged):
        _check_budget(changes.monthly_budget_rub)
        row.monthly_budget_rub = changes.monthly_budget_rub
    if not isinstance(changes.log_content, Unchanged):
        row.log_content = changes.log_content


def check_model_patterns(patterns: Sequence[str] | None) -> builtins.list[str] | None:
    """Cleaned model patterns (``gigachat/*``, ``yandex/yandexgpt``); ``InvalidRequestError``
    for an empty, overlong or malformed one. None: every model is allowed."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    cleaned = [pattern.strip() for pattern in patterns if pattern.strip()]
    if len(cleaned) > MAX_MODEL_PATTERNS:
        raise InvalidRequestError(
            f"At most {MAX_MODEL_PATTERNS} model patterns are allowed.", param="allowed_models"
        )
    for pattern in cleaned:
        if len(pattern) > MAX_PATTERN_LENGTH or not _PATTERN.match(pattern):
            raise InvalidRequestError(
                f"'{pattern[:60]}' is not a model pattern: use model ids such as "
                "'gigachat/GigaChat-2-Max' or 'yandex/yandexgpt:rc', with * for any characters "
                "('gigachat/*').",
                param="allowed_models",
            )
    return list(dict.fromkeys(cleaned))


def _check_budget(budget: float | None) -> None:
    if budget is not None and not 0 <= budget <= MAX_BUDGET_RUB:  # NaN fails too
        raise InvalidRequestError(
            f"The monthly budget must be between 0 and {MAX_BUDGET_RUB:.0f} roubles.",
            param="monthly_budget_rub",
        )


def _check_expiry(expires_at: datetime | None) -> datetime | None:
    """The expiry in UTC; ``InvalidRequestError`` for a naive or past one."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise InvalidRequestError(
            "The expiry time must carry a time zone (e.g. 2026-01-31T23:59:59+03:00).",
            param="expires_at",
        )
    if expires_at <= utc_now():
        raise InvalidRequestError("The expiry time must be in the future.", param="expires_at")
    return expires_at.astimezone(UTC)


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
