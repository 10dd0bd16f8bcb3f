"""Database models: one schema for SQLite (embedded) and PostgreSQL (production).

Changing a model means adding a migration (see ``xrouter.storage.migrate``).
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_LENGTH = 16
_ID_RANDOM_BITS = 95  # 62**16 > 2**95: every random value fits in 16 base62 digits


def new_id(prefix: str) -> str:
    """A random identifier: ``prefix`` followed by 16 base62 characters (95 random bits)."""
    value = secrets.randbits(_ID_RANDOM_BITS)
    digits = []
    for _ in range(_ID_LENGTH):
        value, remainder = divmod(value, 62)
        digits.append(_ID_ALPHABET[remainder])
    return prefix + "".join(digits)


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the only kind the database stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones, so values are stored as naive
    UTC text (which still sorts correctly) and get their UTC zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class ApiKey(Base):
    """An API key. Only its HMAC digest is stored; ``prefix`` is a harmless display form."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    # Bumped on every change: key caches poll it to pick up inserts and revocations.
    updated_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, name={self.name!r}, prefix={self.prefix!r})"


class UsageRecord(Base):
    """One proxied request: who, which model, how many tokens, how long it took."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_key_id_created_at", "key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Unbounded text: a long client-supplied value must never make a whole batch fail.
    request_id: Mapped[str] = mapped_column(String)
    # No foreign key: usage is append-only history and must outlive the keys it names.
    key_id: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String)
    provider: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"UsageRecord(id={self.id!r}, model={self.model!r}, key_id={self.key_id!r})"
