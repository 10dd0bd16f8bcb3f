"""YandexGPT translation against recorded wire fixtures, without a network."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrouter.errors import UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.base import ModelTarget
from xrouter.providers.yandex import YandexConfig, YandexProvider
from xrouter.providers.yandex_wire import YandexStreamDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "yandex"


@pytest.fixture
async def provider() -> YandexProvider:
    async with aiohttp.ClientSession() as session:
        config = YandexConfig(base_url="https://llm.example", folder_id="b1gfolder", api_key="k")
        return YandexProvider(config, session)


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"model": "yandex/yandexgpt", "messages": [{"role": "user", "content": "Hi"}]}
    return msgspec.json.decode(json.dumps({**body, **fields}), type=ChatCompletionRequest)


@pytest.mark.parametrize(
    ("version", "uri"),
    [
        (None, "gpt://b1gfolder/yandexgpt/latest"),
        ("rc", "gpt://b1gfolder/yandexgpt/rc"),
        ("deprecated", "gpt://b1gfolder/yandexgpt/deprecated"),
    ],
)
def test_request_translation(provider: YandexProvider, version: str | None, uri: str) -> None:
    request = chat(
        messages=[{"role": "system", "content": "Кратко"}, {"role": "user", "content": "Привет"}],
        temperature=1.7,
        max_tokens=500,
    )
    upstream = provider.chat_request(request, ModelTarget("yandex", "yandexgpt", version))
    assert upstream.url == "https://llm.example/foundationModels/v1/completion"
    assert json.loads(upstream.body or b"") == {
        "modelUri": uri,
        "completionOptions": {"stream": False, "temperature": 1.0, "maxTokens": "500"},
        "messages": [{"role": "system", "text": "Кратко"}, {"role": "user", "text": "Привет"}],
    }


async def test_auth_headers(provider: YandexProvider) -> None:
    assert await provider.auth_headers() == {
        "Authorization": "Api-Key k",
        "x-folder-id": "b1gfolder",
        # Prompts are not logged by Yandex unless XROUTER_YANDEX_DATA_LOGGING is on.
        "x-data-logging-enabled": "false",
    }


def test_response_translation(provider: YandexProvider) -> None:
    target = ModelTarget("yandex", "yandexgpt")
    reply = provider.chat_reply((FIXTURES / "completion.json").read_bytes(), target)
    assert reply.choices[0].message.content == "Привет! Чем помочь?"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model_version == "09.02.2025"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        15,
        3,
        18,
    )


def decode(lines: list[bytes]) -> tuple[str, list[str | None]]:
    decoder = YandexStreamDecoder()
    deltas = [delta for line in lines for delta in decoder.feed(line)]
    deltas += decoder.close()
    return "".join(d.content or "" for d in deltas), [
        d.finish_reason for d in deltas if d.finish_reason
    ]


def test_cumulative_stream_becomes_deltas() -> None:
    text, reasons = decode((FIXTURES / "stream.ndjson").read_bytes().splitlines())
    assert text == "Раз, два, три."
    assert reasons == ["stop"]


def test_content_filter_replaces_the_text() -> None:
    text, reasons = decode((FIXTURES / "stream_content_filter.ndjson").read_bytes().splitlines())
    assert text.endswith("К сожалению, я не могу ответить.")
    assert reasons == ["content_filter"]


def test_stream_error_line_raises() -> None:
    decoder = YandexStreamDecoder()
    line = b'{"error":{"grpcCode":8,"httpCode":429,"message":"quota","httpStatus":"Too Many"}}'
    with pytest.raises(UpstreamError) as caught:
        decoder.feed(line)
    assert caught.value.status == 429


def test_truncated_stream_raises() -> None:
    decoder = YandexStreamDecoder()
    decoder.feed((FIXTURES / "stream.ndjson").read_bytes().splitlines()[0])
    with pytest.raises(UpstreamError):
        decoder.close()


@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=30))
def test_deltas_concatenate_to_the_final_text(pieces: list[str]) -> None:
    lines = []
    text = ""
    for index, piece in enumerate(pieces):
        text += piece
        status = (
            "ALTERNATIVE_STATUS_FINAL" if index == len(pieces) - 1 else "ALTERNATIVE_STATUS_PARTIAL"
        )
        frame = {
            "result": {
                "alternatives": [
                    {"message": {"role": "assistant", "text": text}, "status": status}
                ],
                "usage": {"inputTextTokens": "1", "completionTokens": "1", "totalTokens": "2"},
                "modelVersion": "v",
            }
        }
        lines.append(json.dumps(frame, ensure_ascii=False).encode())
    assert decode(lines)[0] == text


def test_error_body_mapping(provider: YandexProvider) -> None:
    body = (
        b'{"error":{"grpcCode":16,"httpCode":401,"message":"Unknown api key \'AQVNsecret\'",'
        b'"httpStatus":"Unauthorized","details":[]}}'
    )
    error = provider.error(401, body, None)
    assert error.status == 502
    assert "AQVNsecret" not in error.message
    quota = provider.error(429, b'{"error":{"grpcCode":8,"httpCode":429,"message":"quota"}}', 2.0)
    assert (quota.status, quota.retryable, quota.headers["retry-after"]) == (429, True, "2")


async def test_model_list_has_every_family_and_version(provider: YandexProvider) -> None:
    ids = {card.id: card.type for card in await provider.list_models()}
    for model in ("yandexgpt", "yandexgpt-lite", "yandexgpt-32k", "llama", "llama-lite"):
        for suffix in ("", ":latest", ":rc", ":deprecated"):
            assert ids[f"yandex/{model}{suffix}"] == "chat"
    for model in ("qwen3-235b-a22b-fp8", "gpt-oss-120b"):
        assert ids[f"yandex/{model}"] == ids[f"yandex/{model}:latest"] == "chat"
        assert f"yandex/{model}:rc" not in ids
    for model in ("text-search-doc", "text-search-query"):
        assert ids[f"yandex/{model}"] == ids[f"yandex/{model}:latest"] == "embeddings"


def test_every_emulated_model_is_in_the_catalogue() -> None:
    from xrouter.emulators.yandex import EMBEDDING_VERSIONS, MODEL_VERSIONS
    from xrouter.providers.yandex import CHAT_MODELS, EMBEDDING_MODELS

    assert {(model, v) for model, versions in CHAT_MODELS.items() for v in versions} == set(
        MODEL_VERSIONS
    )
    assert set(EMBEDDING_MODELS) == set(EMBEDDING_VERSIONS)
