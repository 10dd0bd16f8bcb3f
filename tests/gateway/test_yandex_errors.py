"""Yandex failures through the gateway beyond the shared status table: quota, permission and
size errors for chat, and a rate-limited embedding with its Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import YANDEX_EMULATOR_API_KEY, start_emulator
from xrouter.storage.migrate import upgrade

# upstream status -> (client status, error code)
MAPPING = {
    402: (402, "insufficient_quota"),
    403: (502, "upstream_permission_denied"),
    413: (413, "request_too_large"),
    429: (429, "upstream_rate_limited"),
}


@pytest.fixture(scope="module")
def failing(
    loop: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, tuple[RunningGateway, str]]]:
    """One gateway per injected status, each in front of a Yandex emulator that always fails."""
    running = {}
    emulators = []
    gigachat = loop.run(start_emulator("gigachat"))
    for status in MAPPING:
        yandex = loop.run(
            start_emulator("yandex", EmulatorOptions(error_rate=1.0, error_status=status))
        )
        emulators.append(yandex)
        database = tmp_path_factory.mktemp(f"yandex-{status}") / "x.db"
        settings = gateway_settings(database, gigachat.url, yandex.url)
        upgrade(settings.database_url)
        gateway = RunningGateway(settings, loop)
        running[status] = (gateway, gateway.create_key().key)
    yield running
    for gateway, _ in running.values():
        gateway.stop()
    for emulator in [*emulators, gigachat]:
        loop.run(emulator.close())


@pytest.mark.parametrize("status", list(MAPPING))
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "yandex/yandexgpt:rc", "messages": [{"role": "user", "content": "Привет"}]},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "yandex/yandexgpt",
                "stream": True,
                "messages": [{"role": "user", "content": "Привет"}],
            },
        ),
        ("/v1/embeddings", {"model": "yandex/text-search-query", "input": ["раз", "два"]}),
    ],
)
def test_yandex_status_is_mapped(
    failing: dict[int, tuple[RunningGateway, str]], status: int, path: str, body: dict[str, object]
) -> None:
    gateway, key = failing[status]
    response = httpx.post(
        f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    )
    expected_status, expected_code = MAPPING[status]
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (expected_status, expected_code)
    if status == 429:
        # Yandex's own quota message is shown, and its Retry-After passed on.
        assert "quota limit exceed" in error["message"]
        assert int(response.headers["retry-after"]) >= 1
    assert YANDEX_EMULATOR_API_KEY not in response.text
