"""Every proxied request leaves a usage record, written off the request path."""

from __future__ import annotations

import httpx
import openai

from tests.servers import RunningGateway


def test_json_completion_is_recorded(gateway: RunningGateway, http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]},
    )
    body = response.json()
    [record] = gateway.usage_records(response.headers["x-request-id"])
    assert record.model == "gigachat/GigaChat-2-Max"
    assert record.provider == "gigachat"
    assert record.status_code == 200
    assert not record.stream
    assert record.prompt_tokens == body["usage"]["prompt_tokens"]
    assert record.completion_tokens == body["usage"]["completion_tokens"]
    assert record.total_tokens == body["usage"]["total_tokens"]
    assert record.latency_ms > 0
    assert record.error_code is None
    assert record.key_id is not None


def test_stream_is_recorded_with_time_to_first_token(
    gateway: RunningGateway, client: openai.OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="yandex/yandexgpt",
        messages=[{"role": "user", "content": "Расскажи сказку"}],
        stream=True,
    ) as response:
        request_id = response.headers["x-request-id"]
        for _ in response.iter_lines():
            pass
    [record] = gateway.usage_records(request_id)
    assert record.stream
    assert record.status_code == 200
    assert record.completion_tokens > 0
    assert record.ttft_ms is not None
    assert 0 < record.ttft_ms <= record.latency_ms
