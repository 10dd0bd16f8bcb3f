"""GigaChat translation against recorded wire fixtures, without a network."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import msgspec
import pytest

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.base import ModelTarget
from xrouter.providers.gigachat import GigaChatConfig, GigaChatProvider

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gigachat"
TARGET = ModelTarget("gigachat", "GigaChat-2-Max")


@pytest.fixture
async def provider() -> GigaChatProvider:
    async with aiohttp.ClientSession() as session:
        config = GigaChatConfig(
            base_url="https://gigachat.example/api/v1",
            auth_url="https://oauth.example/api/v2/oauth",
            credentials="aWQ6c2VjcmV0",
        )
        return GigaChatProvider(config, session)


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}
    return msgspec.json.decode(json.dumps({**body, **fields}), type=ChatCompletionRequest)


def test_request_translation(provider: GigaChatProvider) -> None:
    request = chat(
        messages=[
            {"role": "system", "content": "Be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "При"}, {"type": "text", "text": "вет"}],
            },
            {"role": "assistant", "content": "Hello"},
            {"role": "developer", "content": "Late instruction"},
        ],
        temperature=0,
        top_p=0.5,
        max_completion_tokens=100,
        repetition_penalty=1.1,
    )
    upstream = provider.chat_request(request, TARGET)
    assert upstream.url == "https://gigachat.example/api/v1/chat/completions"
    payload = json.loads(upstream.body or b"")
    assert payload == {
        "model": "GigaChat-2-Max",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Привет"},
            {"role": "assistant", "content": "Hello"},
            # GigaChat allows one system message, first; a later one is sent as the user's.
            {"role": "user", "content": "Late instruction"},
        ],
        "temperature": 0.001,
        "top_p": 0.5,
        "max_tokens": 100,
        "repetition_penalty": 1.1,
    }
    assert "stream" not in payload  # as the official SDK sends it


def test_stream_request_headers(provider: GigaChatProvider) -> None:
    upstream = provider.chat_request(chat(stream=True), TARGET)
    assert json.loads(upstream.body or b"")["stream"] is True
    assert upstream.headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize(("field", "value"), [("stop", ["x"]), ("n", 2), ("presence_penalty", 0.5)])
def test_unsupported_fields_are_named(
    provider: GigaChatProvider, field: str, value: object
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        provider.chat_request(chat(**{field: value}), TARGET)
    assert caught.value.param == field


def test_image_content_is_refused(provider: GigaChatProvider) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example/cat.png"}}
    with pytest.raises(InvalidRequestError) as caught:
        provider.chat_request(chat(messages=[{"role": "user", "content": [image]}]), TARGET)
    assert caught.value.param == "messages[0].content[0]"


def test_response_translation(provider: GigaChatProvider) -> None:
    reply = provider.chat_reply((FIXTURES / "chat_response.json").read_bytes(), TARGET)
    assert reply.choices[0].message.content == "Здравствуйте! Чем могу помочь?"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model_version == "GigaChat-2-Max:2.0.28.2"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        55,
        30,
        85,
    )
    assert reply.usage.prompt_tokens_details.cached_tokens == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("upstream", "openai"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("function_call", "tool_calls"),
        ("blacklist", "content_filter"),
    ],
)
def test_finish_reasons(provider: GigaChatProvider, upstream: str, openai: str) -> None:
    body = {"choices": [{"message": {"content": "x"}, "index": 0, "finish_reason": upstream}]}
    assert provider.chat_reply(json.dumps(body).encode(), TARGET).choices[0].finish_reason == openai


def test_stream_decoding(provider: GigaChatProvider) -> None:
    decoder = provider.stream_decoder(TARGET)
    deltas = []
    for line in (FIXTURES / "stream.txt").read_bytes().splitlines():
        deltas.extend(decoder.feed(line))
    deltas.extend(decoder.close())
    assert "".join(d.content or "" for d in deltas) == "Здравствуйте!"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.total_tokens == 87


def test_truncated_stream_is_an_error(provider: GigaChatProvider) -> None:
    decoder = provider.stream_decoder(TARGET)
    decoder.feed((FIXTURES / "stream.txt").read_bytes().splitlines()[0])
    with pytest.raises(UpstreamError) as caught:
        decoder.close()
    assert caught.value.code == "upstream_truncated_stream"
    assert caught.value.retryable


def test_malformed_response_is_502(provider: GigaChatProvider) -> None:
    with pytest.raises(UpstreamError) as caught:
        provider.chat_reply(b"<html>gateway timeout</html>", TARGET)
    assert caught.value.status == 502


@pytest.mark.parametrize(
    ("status", "client_status", "retryable"),
    [
        (400, 400, False),
        (401, 502, False),
        (402, 402, True),
        (403, 502, True),
        (404, 404, False),
        (413, 413, False),
        (422, 400, False),
        (429, 429, True),
        (500, 502, True),
        (503, 502, True),
    ],
)
def test_error_mapping(
    provider: GigaChatProvider, status: int, client_status: int, retryable: bool
) -> None:
    body = json.dumps({"status": status, "message": "Invalid params: secret-ish detail"}).encode()
    error = provider.error(status, body, 7.0 if status == 429 else None)
    assert error.status == client_status
    assert error.retryable is retryable
    if status in {401, 402, 403}:
        assert "secret-ish" not in error.message  # account errors never echo upstream text
    if status == 429:
        assert error.headers["retry-after"] == "7"


def test_json_schema_response_format_is_passed_on(provider: GigaChatProvider) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = chat(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        }
    )
    sent = json.loads(provider.chat_request(request, TARGET).body or b"")
    assert sent["response_format"] == {"type": "json_schema", "schema": schema, "strict": True}
    plain = json.loads(
        provider.chat_request(chat(response_format={"type": "text"}), TARGET).body or b""
    )
    assert "response_format" not in plain


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("response_format", {"type": "json_object"}, "response_format"),
        (
            "response_format",
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema",
        ),
        ("reasoning_effort", "minimal", "reasoning_effort"),
        ("frequency_penalty", 0.3, "frequency_penalty"),
    ],
)
def test_values_gigachat_cannot_honour_are_refused(
    provider: GigaChatProvider, field: str, value: object, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        provider.chat_request(chat(**{field: value}), TARGET)
    assert caught.value.param == param


def test_reasoning_effort_and_neutral_values_are_passed_or_dropped(
    provider: GigaChatProvider,
) -> None:
    request = chat(reasoning_effort="high", n=1, presence_penalty=0, parallel_tool_calls=False)
    sent = json.loads(provider.chat_request(request, TARGET).body or b"")
    assert sent["reasoning_effort"] == "high"
    assert not {"n", "presence_penalty", "parallel_tool_calls"} & set(sent)
