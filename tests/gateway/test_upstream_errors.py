"""Provider failures reach the client mapped, never leaked: real emulators injecting errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    YANDEX_EMULATOR_API_KEY,
    start_emulator,
)
from xrouter.storage.migrate import upgrade

USER = [{"role": "user", "content": "Привет"}]
# upstream status -> (client status, error code)
MAPPING = {
    400: (400, "upstream_bad_request"),
    401: (502, "upstream_auth_failed"),
    404: (404, "model_not_found"),
    422: (400, "upstream_invalid_params"),
    429: (429, "upstream_rate_limited"),
    500: (502, "upstream_server_error"),
    503: (502, "upstream_server_error"),
}


def start_gateway(
    loop: BackgroundLoop, tmp_path: Path, gigachat_url: str, yandex_url: str
) -> RunningGateway:
    settings = gateway_settings(tmp_path / "x.db", gigachat_url, yandex_url)
    upgrade(settings.database_url)
    return RunningGateway(settings, loop)


@pytest.fixture
def failing(
    loop: BackgroundLoop, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RunningGateway, str, int]]:
    status: int = request.param
    options = EmulatorOptions(error_rate=1.0, error_status=status)
    gigachat = loop.run(start_emulator("gigachat", options))
    yandex = loop.run(start_emulator("yandex", options))
    running = start_gateway(loop, tmp_path, gigachat.url, yandex.url)
    key = running.create_key().key
    yield running, key, status
    running.stop()
    loop.run(gigachat.close())
    loop.run(yandex.close())


@pytest.mark.parametrize("failing", list(MAPPING), indirect=True)
@pytest.mark.parametrize("model", ["gigachat/GigaChat-2", "yandex/yandexgpt"])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_status_is_mapped(
    failing: tuple[RunningGateway, str, int], model: str, stream: bool
) -> None:
    running, key, upstream_status = failing
    response = httpx.post(
        f"{running.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": USER, "stream": stream},
        timeout=30,
    )
    expected_status, expected_code = MAPPING[upstream_status]
    assert (response.status_code, response.json()["error"]["code"]) == (
        expected_status,
        expected_code,
    )
    if expected_status == 429:
        assert int(response.headers["retry-after"]) >= 1
    [record] = running.usage_records(response.headers["x-request-id"])
    assert (record.status_code, record.error_code) == (expected_status, expected_code)
    text = response.text
    for secret in (GIGACHAT_EMULATOR_CREDENTIALS, YANDEX_EMULATOR_API_KEY):
        assert secret not in text


def test_unreachable_provider_is_502(loop: BackgroundLoop, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    running = start_gateway(loop, tmp_path, closed, closed)
    try:
        key = running.create_key().key
        for model in ("gigachat/GigaChat-2", "yandex/yandexgpt"):
            response = httpx.post(
                f"{running.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": model, "messages": USER},
                timeout=30,
            )
            assert response.status_code == 502
            error = response.json()["error"]
            assert error["code"] == "upstream_unreachable"
            assert "127.0.0.1" not in error["message"]
        assert httpx.get(f"{running.url}/health").status_code == 200
    finally:
        running.stop()
