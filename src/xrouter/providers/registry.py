"""The providers XRouter knows, and how each is built from settings."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    YANDEX_EMULATOR_API_KEY,
    YANDEX_EMULATOR_FOLDER_ID,
)
from xrouter.providers.base import Provider
from xrouter.providers.gigachat import GigaChatConfig, GigaChatProvider
from xrouter.providers.yandex import YandexConfig, YandexProvider
from xrouter.settings import Settings


@dataclass
class EmulatorAddresses:
    """Base URLs of the in-process emulators standing in for unconfigured providers."""

    gigachat: str | None = None
    yandex: str | None = None


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if get is not None else None


def build_gigachat(
    settings: Settings, session: aiohttp.ClientSession, emulator: str | None
) -> GigaChatProvider | None:
    if settings.gigachat_configured:
        config = GigaChatConfig(
            base_url=settings.gigachat_base_url,
            auth_url=settings.gigachat_auth_url,
            credentials=_secret(settings.gigachat_credentials),
            access_token=_secret(settings.gigachat_access_token),
            user=settings.gigachat_user,
            password=_secret(settings.gigachat_password),
            scope=settings.gigachat_scope,
            ca_bundle=settings.gigachat_ca_bundle,
            verify_tls=settings.gigachat_verify_tls,
        )
        return GigaChatProvider(config, session)
    if emulator is None:
        return None
    config = GigaChatConfig(
        base_url=f"{emulator}/api/v1",
        auth_url=f"{emulator}/api/v2/oauth",
        credentials=GIGACHAT_EMULATOR_CREDENTIALS,
        scope=settings.gigachat_scope,
    )
    return GigaChatProvider(config, session, emulated=True)


def build_yandex(
    settings: Settings, session: aiohttp.ClientSession, emulator: str | None
) -> YandexProvider | None:
    if settings.yandex_configured:
        assert settings.yandex_folder_id is not None  # enforced by Settings
        config = YandexConfig(
            base_url=settings.yandex_base_url,
            folder_id=settings.yandex_folder_id,
            api_key=_secret(settings.yandex_api_key),
            iam_token=_secret(settings.yandex_iam_token),
            service_account_key=settings.yandex_service_account_key_file,
            iam_url=settings.yandex_iam_url,
            data_logging=settings.yandex_data_logging,
        )
        return YandexProvider(config, session)
    if emulator is None:
        return None
    config = YandexConfig(
        base_url=emulator, folder_id=YANDEX_EMULATOR_FOLDER_ID, api_key=YANDEX_EMULATOR_API_KEY
    )
    return YandexProvider(config, session, emulated=True)


def enabled_provider_names(settings: Settings) -> list[str]:
    """The prefixes ``build_providers`` will serve: providers with credentials, and the others
    when their emulators stand in (known before anything starts, for the start-up checks)."""
    configured = {"gigachat": settings.gigachat_configured, "yandex": settings.yandex_configured}
    return [
        name for name, ready in configured.items() if ready or settings.emulate_missing_providers
    ]


def build_providers(
    settings: Settings, session: aiohttp.ClientSession, emulators: EmulatorAddresses
) -> dict[str, Provider]:
    """Every provider that has credentials or an emulator, keyed by its model-id prefix."""
    built: dict[str, Provider | None] = {
        "gigachat": build_gigachat(settings, session, emulators.gigachat),
        "yandex": build_yandex(settings, session, emulators.yandex),
    }
    return {name: provider for name, provider in built.items() if provider is not None}
