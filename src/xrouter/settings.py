"""One settings object, built once at start from the environment and an optional YAML file.

Every field can be set as ``XROUTER_<FIELD>`` (upper case) or as a key of the YAML file named by
``--config`` / ``XROUTER_CONFIG``. The environment wins over the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from xrouter.redis_url import validate_redis_url
from xrouter.routing.routes import RouteConfig

GIGACHAT_API_URL = "https://gigachat.devices.sberbank.ru/api/v1"
GIGACHAT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
YANDEX_API_URL = "https://llm.api.cloud.yandex.net"
YANDEX_IAM_URL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./xrouter.db"


class ConfigurationError(Exception):
    """Invalid configuration; the message is one line that names the setting."""


class RateQuota(BaseModel):
    """Requests per minute, tokens per minute and tokens per day; None: no such limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    tpd: int | None = Field(default=None, ge=1)


class ModelPrice(BaseModel):
    """A model's price in roubles per million tokens, for prompts and for completions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: float = Field(ge=0)
    completion: float = Field(default=0.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="XROUTER_", extra="forbid", case_sensitive=False, frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL connections each worker process keeps, and how many more it may open under load.
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_max_overflow: int = Field(default=20, ge=0, le=1000)
    redis_url: str | None = None
    # Keys are stored as HMAC-SHA-256(pepper, key). Unset: a random pepper is created once in
    # ``key_pepper_file`` (fine for one host; set it explicitly when instances share a database).
    key_pepper: SecretStr | None = None
    key_pepper_file: Path = Path("xrouter.pepper")
    key_cache_refresh_seconds: float = Field(default=1.0, gt=0, le=300)

    # Requests to /v1 larger than this are refused with 413 before they are parsed.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # A /v1 request body still arriving after this is refused with 408 (slow-body attacks).
    request_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # When a provider has no credentials, serve it from the built-in emulator (local development).
    emulate_missing_providers: bool = True

    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_total_timeout_seconds: float = Field(default=600.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)
    models_cache_seconds: float = Field(default=300.0, ge=0)

    # Routing (README "Routing"). Routes: aliases with ordered or weighted targets, from
    # ``routes`` here and from ``routes_file`` (which SIGHUP or the admin API reload).
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    routes_file: Path | None = None
    # Time to the first byte of an answer (default: the read timeout); per route and target too.
    upstream_first_byte_timeout_seconds: float | None = Field(default=None, gt=0)
    # Retries of the same target after a retryable failure, before falling back to the next.
    routing_retries: int = Field(default=0, ge=0, le=10)
    routing_backoff_base_ms: float = Field(default=200.0, gt=0)
    routing_backoff_max_ms: float = Field(default=5000.0, gt=0)
    # No attempt starts, and no retry waits, past this long after the request arrived.
    routing_deadline_seconds: float = Field(default=120.0, gt=0)
    routing_breaker_window_seconds: float = Field(default=60.0, gt=0)
    routing_breaker_min_requests: int = Field(default=5, ge=1)
    routing_breaker_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    routing_breaker_open_seconds: float = Field(default=30.0, gt=0)
    routing_breaker_half_open_probes: int = Field(default=1, ge=1)
    # With XROUTER_REDIS_URL: breaker transitions are shared between instances.
    routing_breaker_shared: bool = True
    routing_breaker_sync_seconds: float = Field(default=2.0, gt=0, le=300)
    # Which providers a key's traffic may reach: key id or "owner:<owner>" -> provider names.
    routing_key_providers: dict[str, list[str]] = Field(default_factory=dict)

    usage_flush_seconds: float = Field(default=1.0, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)
    # Each process journals its usage events here before answering, so a killed process loses
    # none: the others on the host (or its restart) write them (README "Keys and usage"). Unset:
    # .xrouter/usage-journal next to the SQLite database, else in the working directory;
    # "": no journal (usage waits in memory only).
    usage_journal_dir: str | None = None
    # On SIGTERM, report not ready (/ready 503) this long while still serving, then stop.
    shutdown_drain_seconds: float = Field(default=5.0, ge=0, le=600)
    # Prices by model id or pattern ("gigachat/GigaChat-2-Max", "yandex/*"), in roubles per
    # million tokens: added to the built-in table, or to ``model_prices_file`` when that is set
    # (a YAML or JSON mapping of the same shape, which then replaces the built-in table).
    model_prices: dict[str, ModelPrice] = Field(default_factory=dict)
    model_prices_file: Path | None = None
    # Months (for key budgets) and days (for usage totals) begin at midnight at this offset
    # from UTC; 3 is Moscow time.
    budget_utc_offset_hours: int = Field(default=3, ge=-12, le=14)

    # Rate limits (README "Rate limits"). A limit left unset does not apply. Keys' own limits
    # (``xrouter keys create --rpm ...``) replace the per-key defaults below.
    rate_limit_backend: Literal["auto", "memory", "redis"] = "auto"  # auto: redis if redis_url
    rate_limit_key_rpm: int | None = Field(default=None, ge=1)
    rate_limit_key_tpm: int | None = Field(default=None, ge=1)
    rate_limit_key_tpd: int | None = Field(default=None, ge=1)
    # Shared by all keys of one owner.
    rate_limit_user_rpm: int | None = Field(default=None, ge=1)
    rate_limit_user_tpm: int | None = Field(default=None, ge=1)
    rate_limit_user_tpd: int | None = Field(default=None, ge=1)
    # Global, across all callers: by public model id ("gigachat/GigaChat-Pro") and by provider.
    rate_limit_models: dict[str, RateQuota] = Field(default_factory=dict)
    rate_limit_providers: dict[str, RateQuota] = Field(default_factory=dict)
    # Completion tokens reserved for a request that sets no max_tokens (settled afterwards).
    rate_limit_completion_tokens: int = Field(default=1024, ge=1)
    # Redis slower than this counts as unavailable and the failure policy applies.
    rate_limit_redis_timeout_ms: float = Field(default=5.0, gt=0, le=60_000)
    rate_limit_redis_retry_seconds: float = Field(default=1.0, gt=0, le=300)
    rate_limit_failure_policy: Literal["open", "closed"] = "open"
    # Instances sharing the Redis limits: while Redis is down each enforces 1/N of every limit.
    rate_limit_instances: int = Field(default=1, ge=1, le=10_000)
    rate_limit_webhook_url: str | None = None
    # Remaining-quota gauges are exported for at most this many of the busiest limits.
    rate_limit_metrics_top: int = Field(default=20, ge=0, le=1000)

    # OAuth authorization server. The issuer is the public base URL (tokens' ``iss``); unset,
    # it is http://HOST:PORT. The audience (tokens' ``aud``) defaults to the issuer + "/v1".
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_access_token_ttl_seconds: int = Field(default=365 * 86400, ge=60)
    oauth_code_ttl_seconds: int = Field(default=60, ge=1, le=600)
    oauth_signing_key_rotation_days: float = Field(default=90.0, gt=0)
    # How often each instance picks up revocations made elsewhere (Redis pushes them at once).
    oauth_revocation_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    oauth_token_cache_size: int = Field(default=10_000, ge=0)
    ui_session_hours: float = Field(default=12.0, gt=0)
    # Unset: cookies are Secure exactly when the request came over TLS.
    cookie_secure: bool | None = None
    login_attempts_per_account: int = Field(default=5, ge=1)
    login_attempts_per_ip: int = Field(default=30, ge=1)
    login_attempt_window_seconds: float = Field(default=900.0, gt=0)

    gigachat_credentials: SecretStr | None = None
    gigachat_access_token: SecretStr | None = None
    # User/password auth (POST {base_url}/token), an alternative to the authorization key.
    gigachat_user: str | None = None
    gigachat_password: SecretStr | None = None
    gigachat_scope: Literal["GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"] = (
        "GIGACHAT_API_PERS"
    )
    gigachat_base_url: str = GIGACHAT_API_URL
    gigachat_auth_url: str = GIGACHAT_AUTH_URL
    gigachat_ca_bundle: Path | None = None
    gigachat_verify_tls: bool = True

    yandex_api_key: SecretStr | None = None
    yandex_iam_token: SecretStr | None = None
    # A service account's authorized key (JSON from ``yc iam key create``), exchanged for IAM
    # tokens at ``yandex_iam_url``: the alternative to a fixed API key or IAM token.
    yandex_service_account_key_file: Path | None = None
    yandex_iam_url: str = YANDEX_IAM_URL
    yandex_folder_id: str | None = None
    yandex_base_url: str = YANDEX_API_URL
    # Off: every request asks Yandex not to log prompts and answers (x-data-logging-enabled).
    yandex_data_logging: bool = False

    @field_validator("gigachat_base_url", "gigachat_auth_url", "yandex_base_url", "yandex_iam_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("oauth_issuer", "oauth_audience")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else None

    @field_validator("key_pepper")
    @classmethod
    def _pepper_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        return validate_redis_url(value) if value else None

    @field_validator("rate_limit_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("model_prices_file")
    @classmethod
    def _prices_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("gigachat_ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("yandex_service_account_key_file")
    @classmethod
    def _authorized_key_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"file {value} does not exist")
        try:
            key = json.loads(value.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValueError(f"file {value} is not a readable JSON authorized key") from None
        fields = ("id", "service_account_id", "private_key")
        if not isinstance(key, dict) or not all(isinstance(key.get(f), str) for f in fields):
            raise ValueError(f"file {value} needs id, service_account_id and private_key")
        return value

    @model_validator(mode="after")
    def _gigachat_user_needs_password(self) -> Settings:
        if bool(self.gigachat_user) != bool(self.gigachat_password):
            raise ValueError("gigachat_password: set both a GigaChat user and password, or neither")
        return self

    @model_validator(mode="after")
    def _yandex_needs_folder(self) -> Settings:
        credentials = [
            name
            for name, value in (
                ("yandex_api_key", self.yandex_api_key),
                ("yandex_iam_token", self.yandex_iam_token),
                ("yandex_service_account_key_file", self.yandex_service_account_key_file),
            )
            if value
        ]
        if credentials and not self.yandex_folder_id:
            raise ValueError(
                "yandex_folder_id: required with a Yandex API key, IAM token or service account key"
            )
        if len(credentials) > 1:
            raise ValueError(
                f"{credentials[1]}: set one Yandex credential (API key, IAM token or service "
                "account key), not several"
            )
        return self

    @model_validator(mode="after")
    def _redis_backend_needs_url(self) -> Settings:
        if self.rate_limit_backend == "redis" and not self.redis_url:
            raise ValueError("rate_limit_backend: 'redis' needs XROUTER_REDIS_URL")
        return self

    @property
    def is_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def issuer(self) -> str:
        """The OAuth issuer identifier: the configured one, else this server's own address."""
        if self.oauth_issuer:
            return self.oauth_issuer
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def audience(self) -> str:
        """The ``aud`` of access tokens: the resource they are for, the ``/v1`` API."""
        return self.oauth_audience or f"{self.issuer}/v1"

    @property
    def gigachat_configured(self) -> bool:
        return bool(
            self.gigachat_credentials
            or self.gigachat_access_token
            or (self.gigachat_user and self.gigachat_password)
        )

    @property
    def yandex_configured(self) -> bool:
        return bool(
            self.yandex_api_key or self.yandex_iam_token or self.yandex_service_account_key_file
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("XROUTER_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning any problem into a one-line ``ConfigurationError``."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigurationError(f"XROUTER_CONFIG: file {path} does not exist")
        os.environ["XROUTER_CONFIG"] = str(path)
    elif (env_file := os.environ.get("XROUTER_CONFIG")) and not Path(env_file).is_file():
        raise ConfigurationError(f"XROUTER_CONFIG: file {env_file} does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None
    except Exception as error:  # a YAML syntax error, an unreadable file
        raise ConfigurationError(f"XROUTER_CONFIG: {error}".splitlines()[0]) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if part]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not location and ":" in message:
        location, message = [message.split(":", 1)[0]], message.split(":", 1)[1].strip()
    setting = "XROUTER_" + location[0].upper() if location else "configuration"
    if location[:1] == ["routes"] and len(location) > 1:
        # Name the route and its field, as a routes file's error does.
        field = ".".join(str(part) for part in first["loc"][2:])
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        where = f"route '{location[1]}': {field}" if field else f"route '{location[1]}'"
        return f"{setting}: {where}: {message}"
    if first["type"] == "extra_forbidden":
        return f"{setting}: unknown setting"
    return f"{setting}: {message}"
