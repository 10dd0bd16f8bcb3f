from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    YANDEX_EMULATOR_API_KEY,
    YANDEX_EMULATOR_FOLDER_ID,
    RunningEmulator,
    start_emulator,
)
from xrouter.settings import Settings
from xrouter.storage.migrate import upgrade


@pytest.fixture(scope="session")
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop()
    yield background
    background.close()


@pytest.fixture(scope="session")
def emulators(loop: BackgroundLoop) -> Iterator[dict[str, RunningEmulator]]:
    running = {
        kind: loop.run(start_emulator(kind, EmulatorOptions()))  # type: ignore[arg-type]
        for kind in ("gigachat", "yandex")
    }
    yield running
    for emulator in running.values():
        loop.run(emulator.close())


def gateway_settings(
    database: Path, gigachat_url: str, yandex_url: str, **overrides: object
) -> Settings:
    """Settings of a gateway whose providers are configured as real ones, at the emulators."""
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{database}",
        "key_pepper": "test-pepper-0123456789abcdef",
        "key_cache_refresh_seconds": 0.2,
        "usage_flush_seconds": 0.1,
        "gigachat_credentials": GIGACHAT_EMULATOR_CREDENTIALS,
        "gigachat_base_url": f"{gigachat_url}/api/v1",
        "gigachat_auth_url": f"{gigachat_url}/api/v2/oauth",
        "yandex_api_key": YANDEX_EMULATOR_API_KEY,
        "yandex_folder_id": YANDEX_EMULATOR_FOLDER_ID,
        "yandex_base_url": yandex_url,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def gateway(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("gateway") / "xrouter.db"
    settings = gateway_settings(database, emulators["gigachat"].url, emulators["yandex"].url)
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api_key(gateway: RunningGateway) -> str:
    return gateway.create_key("session key").key


@pytest.fixture
def client(gateway: RunningGateway, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(gateway: RunningGateway, api_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as session:
        yield session
