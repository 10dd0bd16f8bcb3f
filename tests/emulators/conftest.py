"""Emulators started on a free loopback port, and an aiohttp session to talk to them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    EmulatorKind,
    RunningEmulator,
    start_emulator,
)

StartEmulator = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def start() -> AsyncIterator[StartEmulator]:
    """Start emulators with given options; all of them are closed after the test."""
    running: list[RunningEmulator] = []

    async def _start(kind: EmulatorKind, **options: object) -> RunningEmulator:
        emulator = await start_emulator(kind, EmulatorOptions(**options))  # type: ignore[arg-type]
        running.append(emulator)
        return emulator

    yield _start
    for emulator in running:
        await emulator.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


FetchToken = Callable[[str], Awaitable[str]]


@pytest.fixture
def fetch_token(session: aiohttp.ClientSession) -> FetchToken:
    """Fetch an access token from the GigaChat emulator at the given base URL."""

    async def _fetch(url: str) -> str:
        async with session.post(
            f"{url}/api/v2/oauth",
            headers={
                "Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}",
                "RqUID": str(uuid.uuid4()),
            },
            data={"scope": "GIGACHAT_API_PERS"},
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        return str(body["access_token"])

    return _fetch
