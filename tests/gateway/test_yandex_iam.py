"""The gateway authenticating to Yandex with a service account key: IAM tokens from the
emulator's IAM endpoint, one exchange for a burst of requests, renewal, and a refused key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.yandex.keys import write_authorized_key
from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.emulators.yandex import STATS_KEY
from xrouter.storage.migrate import upgrade

USER = [{"role": "user", "content": "Привет"}]

TOKEN_TTL = 4.0


def _gateway(
    loop: BackgroundLoop, tmp_path: Path, emulator: RunningEmulator, key_file: Path
) -> RunningGateway:
    settings = gateway_settings(
        tmp_path / "x.db",
        emulator.url,
        emulator.url,
        gigachat_credentials=None,
        yandex_api_key=None,
        yandex_service_account_key_file=key_file,
        yandex_iam_url=f"{emulator.url}/iam/v1/tokens",
    )
    upgrade(settings.database_url)
    return RunningGateway(settings, loop)


@pytest.fixture
def iam_gateway(
    loop: BackgroundLoop, tmp_path: Path
) -> Iterator[tuple[RunningGateway, RunningEmulator]]:
    key_file = write_authorized_key(tmp_path / "authorized_key.json")
    # Only IAM tokens open this emulator: an API key is refused.
    # Long enough that a burst on a loaded machine ends before the half-life renewal starts.
    options = EmulatorOptions(api_key="not-used-by-the-gateway", token_ttl_seconds=TOKEN_TTL)
    emulator = loop.run(start_emulator("yandex", options, service_account_keys=[key_file]))
    gateway = _gateway(loop, tmp_path, emulator, key_file)
    yield gateway, emulator
    gateway.stop()
    loop.run(emulator.close())


def test_a_burst_of_requests_makes_one_iam_exchange(
    iam_gateway: tuple[RunningGateway, RunningEmulator],
) -> None:
    gateway, emulator = iam_gateway
    key = gateway.create_key("iam").key

    async def burst() -> list[str | None]:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key=key, max_retries=0
        ) as client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(model="yandex/yandexgpt", messages=USER)  # type: ignore[arg-type]
                    for _ in range(100)
                )
            )
        return [reply.choices[0].message.content for reply in replies]

    answers = asyncio.run(burst())
    assert len(answers) == 100
    assert all(answers)
    assert emulator.app[STATS_KEY].iam_token_requests == 1
    assert emulator.app[STATS_KEY].completion_requests == 100

    # Past the token's half-life a later request gets a renewed token.
    time.sleep(TOKEN_TTL / 2 + 0.2)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="yandex/yandexgpt", messages=USER, stream=True
        )  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert emulator.app[STATS_KEY].iam_token_requests >= 2


def test_an_unknown_service_account_key_is_an_auth_failure(
    loop: BackgroundLoop, tmp_path: Path
) -> None:
    emulator = loop.run(start_emulator("yandex"))  # knows no service account
    key_file = write_authorized_key(tmp_path / "authorized_key.json")
    gateway = _gateway(loop, tmp_path, emulator, key_file)
    try:
        key = gateway.create_key().key
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "yandex/yandexgpt", "messages": USER},
            timeout=30,
        )
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_auth_failed"
        assert key_file.read_text() not in response.text
        assert emulator.app[STATS_KEY].completion_requests == 0
    finally:
        gateway.stop()
        loop.run(emulator.close())
