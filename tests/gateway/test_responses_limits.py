"""One key, one set of limits: chat completions, Messages and Responses draw on the same ones."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.servers import RunningGateway
from xrouter.keys.service import CreatedKey

MODEL = "yandex/yandexgpt"


def test_a_key_limited_to_n_requests_is_limited_across_all_three_apis(
    gateway: RunningGateway,
) -> None:
    created: CreatedKey = gateway.loop.run(
        gateway.runtime.key_service.create("three apis", rpm=3)  # type: ignore[arg-type]
    )
    key = created.key
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as oai,
        anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0) as claude,
    ):
        chat = oai.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Привет"}]
        )
        message = claude.messages.with_raw_response.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Привет"}]
        )
        response = oai.responses.with_raw_response.create(model=MODEL, input="Привет")
        remaining = [
            raw.headers["x-ratelimit-remaining-requests"] for raw in (chat, message, response)
        ]
        assert remaining == ["2", "1", "0"]
        # The fourth request is refused whichever API it uses, each in its own error shape.
        with pytest.raises(openai.RateLimitError) as chat_limited:
            oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "?"}])
        with pytest.raises(anthropic.RateLimitError) as messages_limited:
            claude.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "?"}]
            )
        with pytest.raises(openai.RateLimitError) as responses_limited:
            oai.responses.create(model=MODEL, input="?")
    assert chat_limited.value.code == responses_limited.value.code == "rate_limit_exceeded"
    body = messages_limited.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "rate_limit_error"
    assert "requests per minute" in body["error"]["message"]
    assert int(messages_limited.value.response.headers["retry-after"]) > 0
    # Each allowed request left its usage record under the same key.
    for raw in (chat, message, response):
        [record] = gateway.usage_records(raw.headers["x-request-id"])
        assert record.key_id == created.info.id
        assert record.status_code == 200


def test_count_tokens_is_not_charged(gateway: RunningGateway) -> None:
    created: CreatedKey = gateway.loop.run(
        gateway.runtime.key_service.create("counting", rpm=1)  # type: ignore[arg-type]
    )
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "Привет"}]}
    headers = {"x-api-key": created.key}
    for _ in range(3):
        counted = httpx.post(
            f"{gateway.url}/v1/messages/count_tokens", json=payload, headers=headers, timeout=30
        )
        assert counted.status_code == 200
    sent = httpx.post(
        f"{gateway.url}/v1/messages", json={**payload, "max_tokens": 20}, headers=headers
    )
    assert sent.status_code == 200


def test_the_openapi_document_describes_both_apis(gateway: RunningGateway) -> None:
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, fields in (
        ("/v1/messages", {"model", "messages", "max_tokens"}),
        ("/v1/messages/count_tokens", {"model", "messages"}),
        ("/v1/responses", {"model"}),
    ):
        operation = schema["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert fields <= set(components[ref.rsplit("/", 1)[1]]["required"])
        for answer in operation["responses"].values():
            for content in answer["content"].values():
                if "$ref" in content["schema"]:
                    assert content["schema"]["$ref"].rsplit("/", 1)[1] in components
    assert schema["components"]["securitySchemes"]["apiKeyAuth"]["name"] == "x-api-key"
