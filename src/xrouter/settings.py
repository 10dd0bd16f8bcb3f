"""One settings object, built once at start from the environment and an optional YAML file.

Every field can be set as ``XROUTER_<FIELD>`` (upper case) or as a key of the YAML file named by
``--config`` / ``XROUTER_CONFIG``. The environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

GIGACHAT_API_URL = "https://gigachat.devices.sberbank.ru/api/v1"
GIGACHAT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
YANDEX_API_URL = "https://llm.api.cloud.yandex.net"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./xrouter.db"


class ConfigurationError(Exception):
    """Invalid configuration; the message is one line that names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="XROUTER_", extra="forbid", case_sensitive=False, frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Keys are stored as HMAC-SHA-256(pepper, key). Unset: a random pepper is created once in
    # ``key_pepper_file`` (fine for one host; set it explicitly when instances share a database).
    key_pepper: SecretStr | None = None
    key_pepper_file: Path = Path("xrouter.pepper")
    key_cache_refresh_seconds: float = Field(default=1.0, gt=0, le=300)

    # Requests to /v1 larger than this are refused with 413 before they are parsed.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # When a provider has no credentials, serve it from the built-in emulator (local development).
    emulate_missing_providers: bool = True

    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_total_timeout_seconds: float = Field(default=600.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)
    models_cache_seconds: float = Field(default=300.0, ge=0)

    usage_flush_seconds: float = Field(default=1.0, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)

    gigachat_credentials: SecretStr | None = None
    gigachat_access_token: SecretStr | None = None
    gigachat_scope: Literal["GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"] = (
        "GIGACHAT_API_PERS"
    )
    gigachat_base_url: str = GIGACHAT_API_URL
    gigachat_auth_url: str = GIGACHAT_AUTH_URL
    gigachat_ca_bundle: Path | None = None
    gigachat_verify_tls: bool = True

    yandex_api_key: SecretStr | None = None
    yandex_iam_token: SecretStr | None = None
    yandex_folder_id: str | None = None
    yandex_base_url: str = YANDEX_API_URL

    @field_validator("gigachat_base_url", "gigachat_auth_url", "yandex_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("gigachat_ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _yandex_needs_folder(self) -> Settings:
        if (self.yandex_api_key or self.yandex_iam_token) and not self.yandex_folder_id:
            raise ValueError("yandex_folder_id: required when a Yandex API key or IAM token is set")
        if self.yandex_api_key and self.yandex_iam_token:
            raise ValueError("yandex_iam_token: set either an API key or an IAM token, not both")
        return self

    @property
    def is_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def gigachat_configured(self) -> bool:
        return bool(self.gigachat_credentials or self.gigachat_access_token)

    @property
    def yandex_configured(self) -> bool:
        return bool(self.yandex_api_key or self.yandex_iam_token)

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
    if first["type"] == "extra_forbidden":
        return f"{setting}: unknown setting"
    return f"{setting}: {message}"
