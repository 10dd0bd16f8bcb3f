"""Database models: one schema for SQLite (embedded) and PostgreSQL (production).

Changing a model means adding a migration (see ``xrouter.storage.migrate``).
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
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
    # Per-key rate limits; None falls back to the configured defaults (see xrouter.limits).
    rpm: Mapped[int | None] = mapped_column(Integer)  # requests per minute
    tpm: Mapped[int | None] = mapped_column(Integer)  # tokens per minute
    tpd: Mapped[int | None] = mapped_column(Integer)  # tokens per day
    # "inference" keys call /v1; "management" keys call the key management API only.
    kind: Mapped[str] = mapped_column(String(16), default="inference")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None]
    # Written with the usage records, never on the request path.
    last_used_at: Mapped[datetime | None]
    # Model id patterns ("gigachat/*"); None: every model.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    # Spending budget per calendar month, in roubles; None: no budget.
    monthly_budget_rub: Mapped[float | None] = mapped_column(Float)
    # Opt-in: the gateway logs this key's prompts and completions (``xrouter.content``).
    log_content: Mapped[bool] = mapped_column(Boolean, default=False)
    # The app (its origin) the OpenRouter-compatible key flow issued the key to; None for keys
    # made in the CLI, the API or the keys page.
    created_by_app: Mapped[str | None] = mapped_column(String(200))

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
    # The key's owner when the request was made (a user id for keys made in the UI or API).
    user_id: Mapped[str | None] = mapped_column(String(200))
    # From the configured price table; 0 for models without a price.
    cost_rub: Mapped[float] = mapped_column(Float, default=0.0)

    def __repr__(self) -> str:
        return f"UsageRecord(id={self.id!r}, model={self.model!r}, key_id={self.key_id!r})"


class UsageRollup(Base):
    """Usage of one key summed over one minute, hour or day: what charts and totals read.

    Written in the same transaction as the usage records it sums, from exactly the rows that
    transaction inserted, so a retried batch is never counted twice.
    """

    __tablename__ = "usage_rollups"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)  # minute, hour, day
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_rub: Mapped[float] = mapped_column(Float)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    ttft_ms_sum: Mapped[float] = mapped_column(Float)
    ttft_count: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A person who signs in to the web UI and authorizes apps. ``email`` is stored lower case."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    # argon2id in PHC string form (algorithm, parameters, salt and hash in one value).
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r}, is_admin={self.is_admin!r})"


class UiSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class OAuthClient(Base):
    """A registered OAuth client. Public clients have no secret; redirect URIs match exactly."""

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    # HMAC-SHA-256 of the client secret (confidential clients only).
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"OAuthClient(id={self.id!r}, name={self.name!r})"


class AuthorizationCode(Base):
    """A one-time authorization code (only its SHA-256 is stored), for an OAuth client or,
    with ``client_id`` None, for the OpenRouter-compatible key flow (``app_name`` labels it)."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    app_name: Mapped[str | None] = mapped_column(String(200))
    # Every code carries a challenge: codes without PKCE are never issued.
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # Set by the one exchange that wins; a later exchange is a replay.
    used_at: Mapped[datetime | None]
    # The API key created from this code by the OpenRouter-compatible flow.
    api_key_id: Mapped[str | None] = mapped_column(String(32))


class AccessTokenRecord(Base):
    """An issued JWT access token, by ``jti``: for the apps list, introspection and revocation."""

    __tablename__ = "oauth_access_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(400))
    code_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # Gateways poll this column to pick up revocations made elsewhere.
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)


class SigningKey(Base):
    """A token signing key pair. The private JWK is encrypted with a key derived from the
    pepper, so the database alone cannot mint tokens."""

    __tablename__ = "oauth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # The first moment this key signs; it is published in the JWKS before that.
    active_from: Mapped[datetime]
