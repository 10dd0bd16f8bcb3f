"""Rate limits through one running gateway (the in-process backend): headers, 429s, settling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.server import RunningEmulator
from xrouter.keys.service import CreatedKey
from xrouter.limits.policy import prompt_tokens
from xrouter.storage.migrate import upgrade

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Привет"}]


def limited_key(gateway: RunningGateway, **limits: int) -> CreatedKey:
    created: CreatedKey = gateway.loop.run(
        gateway.runtime.key_service.create("limited", **limits)  # type: ignore[arg-type]
    )
    return created


def post(gateway: RunningGateway, key: str, payload: dict[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{gateway.url}{CHAT}", json=payload, headers=headers, timeout=30)


def test_requests_limit_headers_and_openai_shaped_429(gateway: RunningGateway) -> None:
    key = limited_key(gateway, rpm=2).key
    payload = {"model": "gigachat/GigaChat-2", "messages": MESSAGES}

    first, second, third = (post(gateway, key, payload) for _ in range(3))

    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in first.headers
    assert third.json() == {
        "error": {
            "message": third.json()["error"]["message"],
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert "requests per minute (RPM) of key" in third.json()["error"]["message"]
    assert 29 <= int(third.headers["retry-after"]) <= 30
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-request-id"]


def test_the_openai_sdk_sees_a_rate_limit_error(gateway: RunningGateway) -> None:
    key = limited_key(gateway, rpm=1).key
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        client.chat.completions.create(model="yandex/yandexgpt", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="yandex/yandexgpt", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"


def remaining_tokens(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining-tokens"])


def settled_remaining(gateway: RunningGateway, key: str, payload: dict[str, object]) -> int:
    """Remaining tokens seen by a probe request, plus what the probe itself reserved."""
    probe = {"model": "gigachat/GigaChat-2", "messages": MESSAGES, "max_tokens": 1}
    response = post(gateway, key, probe)
    assert response.status_code == 200
    reserved = prompt_tokens(len(httpx.Request("POST", "/", json=probe).content)) + 1
    return remaining_tokens(response) + reserved


def test_tokens_are_reserved_then_settled_with_real_usage(gateway: RunningGateway) -> None:
    # A daily limit refills by about one token a second, which keeps the arithmetic exact.
    limit = 86_400
    key = limited_key(gateway, tpd=limit).key
    payload = {"model": "gigachat/GigaChat-2", "messages": MESSAGES, "max_tokens": 500}
    reserved = prompt_tokens(len(httpx.Request("POST", "/", json=payload).content)) + 500

    response = post(gateway, key, payload)

    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-tokens"] == str(limit)
    assert limit - reserved - 1 <= remaining_tokens(response) <= limit - reserved
    used = response.json()["usage"]["total_tokens"]
    assert used < reserved
    time.sleep(0.1)  # settling runs just after the response
    assert limit - used - 3 <= settled_remaining(gateway, key, payload) <= limit - used + 1


def test_a_stream_settles_when_it_ends(gateway: RunningGateway) -> None:
    limit = 86_400
    key = limited_key(gateway, tpd=limit).key
    payload = {
        "model": "yandex/yandexgpt",
        "messages": MESSAGES,
        "max_tokens": 700,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", f"{gateway.url}{CHAT}", json=payload, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < limit - 700
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    used = httpx.Response(200, content=lines[-1].removeprefix("data: ")).json()["usage"]
    time.sleep(0.1)
    settled = settled_remaining(gateway, key, payload)
    assert limit - used["total_tokens"] - 3 <= settled <= limit - used["total_tokens"] + 1


def test_embeddings_are_limited_too(gateway: RunningGateway) -> None:
    key = limited_key(gateway, rpm=1).key
    headers = {"Authorization": f"Bearer {key}"}
    payload = {"model": "gigachat/Embeddings", "input": "текст"}
    first = httpx.post(f"{gateway.url}/v1/embeddings", json=payload, headers=headers)
    second = httpx.post(f"{gateway.url}/v1/embeddings", json=payload, headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)
    assert first.headers["x-ratelimit-remaining-requests"] == "0"


def test_metrics_count_checks_and_rejections(gateway: RunningGateway) -> None:
    key = limited_key(gateway, rpm=1)
    payload = {"model": "gigachat/GigaChat-2", "messages": MESSAGES}
    post(gateway, key.key, payload)
    post(gateway, key.key, payload)

    metrics = httpx.get(f"{gateway.url}/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'xrouter_ratelimit_checks_total{backend="memory",result="rejected"}' in text
    assert 'xrouter_ratelimit_rejections_total{limit="rpm",scope="key"}' in text
    assert f'subject="{key.info.id}"' in text
    assert key.key not in text


@pytest.fixture(scope="module")
def broken_upstream_gateway(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    database: Path = tmp_path_factory.mktemp("limits") / "xrouter.db"
    settings = gateway_settings(
        database,
        "http://127.0.0.1:1",  # nothing listens there: every GigaChat call fails
        emulators["yandex"].url,
        upstream_connect_timeout_seconds=1,
        rate_limit_providers={"gigachat": {"rpm": 1}},
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running
    running.stop()


def test_failed_requests_carry_headers_and_are_refunded(
    broken_upstream_gateway: RunningGateway,
) -> None:
    gateway = broken_upstream_gateway
    key = gateway.create_key("k").key
    payload = {"model": "gigachat/GigaChat-2", "messages": MESSAGES}

    failures = [post(gateway, key, payload) for _ in range(3)]

    # Never a 429: each failed attempt gave its request back, so retries are not charged.
    assert {response.status_code for response in failures} == {502}
    for response in failures:
        assert response.headers["x-ratelimit-limit-requests"] == "1"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
    other = post(gateway, key, {"model": "yandex/yandexgpt", "messages": MESSAGES})
    assert other.status_code == 200
    assert "x-ratelimit-limit-requests" not in other.headers
