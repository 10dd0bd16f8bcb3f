"""Every GigaChat failure reaches the client mapped, through the whole gateway over real HTTP:
each upstream status, the transport failures, and finish reasons that are not answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import ERROR_MESSAGES, FAULTS_KEY, GigaChatFaults
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    RunningEmulator,
    start_emulator,
)
from xrouter.storage.migrate import upgrade

MODEL = "gigachat/GigaChat-2"
HELLO = [{"role": "user", "content": "Привет"}]
READ_TIMEOUT_SECONDS = 1.0
# upstream status -> (client status, code, the upstream's message is shown)
STATUSES = {
    400: (400, "upstream_bad_request", True),
    401: (502, "upstream_auth_failed", False),
    402: (402, "insufficient_quota", False),
    403: (502, "upstream_permission_denied", False),
    404: (404, "model_not_found", True),
    413: (413, "request_too_large", True),
    422: (400, "upstream_invalid_params", True),
    429: (429, "upstream_rate_limited", True),
    500: (502, "upstream_server_error", True),
    503: (502, "upstream_server_error", True),
}


@pytest.fixture(scope="module")
def gigachat(loop: BackgroundLoop) -> Iterator[RunningEmulator]:
    emulator = loop.run(start_emulator("gigachat", EmulatorOptions(stream_chunks=4)))
    yield emulator
    loop.run(emulator.close())


@pytest.fixture(scope="module")
def running(
    loop: BackgroundLoop,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gigachat-errors") / "x.db",
        gigachat.url,
        emulators["yandex"].url,
        upstream_read_timeout_seconds=READ_TIMEOUT_SECONDS,
    )
    upgrade(settings.database_url)
    gateway = RunningGateway(settings, loop)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(running: RunningGateway) -> str:
    return running.create_key("errors").key


@pytest.fixture
def faults(gigachat: RunningEmulator) -> Iterator[GigaChatFaults]:
    faults = gigachat.app[FAULTS_KEY]
    yield faults
    faults.clear()


def post(running: RunningGateway, key: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": HELLO, "stream": stream},
        timeout=30,
    )


def events(response: httpx.Response) -> list[Any]:
    """The JSON payloads of an SSE body, checking it ends with [DONE]."""
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert frames[-1] == "data: [DONE]"
    return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]


@pytest.mark.parametrize("upstream", sorted(STATUSES))
@pytest.mark.parametrize("stream", [False, True])
def test_each_status(
    running: RunningGateway, key: str, faults: GigaChatFaults, upstream: int, stream: bool
) -> None:
    faults.status = upstream
    faults.retry_after = "17" if upstream in {429, 503} else None
    response = post(running, key, stream)
    status, code, shows_message = STATUSES[upstream]
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (status, code)
    assert "gigachat" in error["message"]
    assert (ERROR_MESSAGES[upstream] in error["message"]) == shows_message
    assert response.headers.get("retry-after") == ("17" if upstream in {429, 503} else None)
    assert GIGACHAT_EMULATOR_CREDENTIALS not in response.text
    [record] = running.usage_records(response.headers["x-request-id"])
    assert (record.status_code, record.error_code) == (status, code)


def test_openai_sdk_sees_rate_limit_with_retry_after(
    running: RunningGateway, key: str, faults: GigaChatFaults
) -> None:
    faults.status, faults.retry_after = 429, "3"
    with (
        openai.OpenAI(base_url=f"{running.url}/v1", api_key=key, max_retries=0) as client,
        pytest.raises(openai.RateLimitError) as caught,
    ):
        client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["type"] == "rate_limit_error"  # type: ignore[index]


def test_a_passing_failure_is_not_seen_by_the_next_request(
    running: RunningGateway, key: str, faults: GigaChatFaults
) -> None:
    faults.status, faults.remaining = 503, 1
    assert post(running, key, False).status_code == 502
    assert post(running, key, False).status_code == 200


@pytest.mark.parametrize(
    ("mode", "stream", "status", "code"),
    [
        ("reset", False, 502, "upstream_disconnected"),
        ("reset", True, 502, "upstream_disconnected"),
        ("stall", False, 504, "upstream_timeout"),
        ("stall", True, 504, "upstream_timeout"),
        ("malformed", False, 502, "upstream_malformed_response"),
        ("truncated", False, 502, "upstream_disconnected"),
    ],
)
def test_transport_failures_before_the_answer(
    running: RunningGateway,
    key: str,
    faults: GigaChatFaults,
    mode: str,
    stream: bool,
    status: int,
    code: str,
) -> None:
    faults.mode = mode  # type: ignore[assignment]
    faults.stall_seconds = READ_TIMEOUT_SECONDS * 3
    response = post(running, key, stream)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["type"]) == (status, code, "upstream_error")
    assert "127.0.0.1" not in error["message"]


@pytest.mark.parametrize(
    ("mode", "code"),
    [("malformed", "upstream_malformed_response"), ("truncated", "upstream_truncated_stream")],
)
def test_stream_failures_after_the_first_chunk_are_reported_in_the_stream(
    running: RunningGateway, key: str, faults: GigaChatFaults, mode: str, code: str
) -> None:
    faults.mode = mode  # type: ignore[assignment]
    response = post(running, key, stream=True)
    assert response.status_code == 200
    payloads = events(response)
    assert payloads[1]["choices"][0]["delta"]["content"]  # the part that did arrive
    assert payloads[-1]["error"]["code"] == code
    assert not any(p.get("choices", [{}])[0].get("finish_reason") for p in payloads[:-1])
    [record] = running.usage_records(response.headers["x-request-id"])
    assert (record.status_code, record.error_code) == (502, code)


@pytest.mark.parametrize("stream", [False, True])
def test_topic_filter_is_content_filter(
    running: RunningGateway, key: str, faults: GigaChatFaults, stream: bool
) -> None:
    faults.finish_reason = "blacklist"
    response = post(running, key, stream)
    assert response.status_code == 200
    if stream:
        reasons = [c["choices"][0]["finish_reason"] for c in events(response) if c["choices"]]
        assert reasons[-1] == "content_filter"
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "content_filter"
        assert choice["message"]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_finish_reason_error_is_a_retryable_502(
    running: RunningGateway, key: str, faults: GigaChatFaults, stream: bool
) -> None:
    faults.finish_reason = "error"
    response = post(running, key, stream)
    # Nothing was sent before the failure, so a stream gets the HTTP status too (and a route
    # could still fall back to another target).
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_invalid_function_call"
