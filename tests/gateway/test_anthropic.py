"""/v1/messages and /v1/messages/count_tokens with the official anthropic SDK as the client."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.servers import RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY
from xrouter.emulators.server import RunningEmulator

MODELS = ["gigachat/GigaChat-2-Max", "yandex/yandexgpt:rc"]
HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Привет! Как дела?"}]


@pytest.fixture
def claude(gateway: RunningGateway, api_key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=api_key, max_retries=0) as sdk:
        yield sdk


def sse_events(body: str) -> list[tuple[str, str]]:
    """(event name, data) of each frame of an SSE body."""
    frames = []
    for frame in body.split("\n\n"):
        if frame:
            event, data = frame.split("\n", 1)
            frames.append((event.removeprefix("event: "), data.removeprefix("data: ")))
    return frames


@pytest.mark.parametrize("model", MODELS)
def test_a_message(gateway: RunningGateway, claude: anthropic.Anthropic, model: str) -> None:
    raw = claude.messages.with_raw_response.create(
        model=model,
        max_tokens=200,
        system=[{"type": "text", "text": "Ты помощник.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        metadata={"user_id": "user-42"},
        extra_body={"temperature": 0.3},
    )
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    [block] = message.content
    assert block.type == "text"
    assert "Привет! Как дела?" in block.text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    # The same usage record as a chat completion.
    [record] = gateway.usage_records(raw.headers["x-request-id"])
    assert (record.model, record.status_code, record.stream) == (model, 200, False)
    assert record.completion_tokens == message.usage.output_tokens
    assert record.prompt_tokens == message.usage.input_tokens + (
        message.usage.cache_read_input_tokens or 0
    )


@pytest.mark.parametrize("model", MODELS)
def test_streaming_reassembles_the_same_message(
    gateway: RunningGateway, claude: anthropic.Anthropic, model: str
) -> None:
    whole = claude.messages.create(model=model, max_tokens=200, messages=HELLO)
    with claude.messages.stream(model=model, max_tokens=200, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert text == whole.content[0].text
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.model == model
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_the_event_sequence_is_anthropics(gateway: RunningGateway, api_key: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
        json={"model": MODELS[1], "max_tokens": 100, "messages": HELLO, "stream": True},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in sse_events(response.text)]
    deltas = names.count("content_block_delta")
    assert deltas > 1  # the text arrives in pieces, as the provider streams it
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    [record] = gateway.usage_records(response.headers["x-request-id"])
    assert record.stream
    assert record.ttft_ms is not None


def test_keys_in_x_api_key_or_bearer(gateway: RunningGateway, api_key: str) -> None:
    with anthropic.Anthropic(base_url=gateway.url, auth_token=api_key, max_retries=0) as bearer:
        assert bearer.messages.create(model=MODELS[0], max_tokens=50, messages=HELLO).content
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="sk-xr-v1-wrong", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        wrong.messages.create(model=MODELS[0], max_tokens=50, messages=HELLO)
    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert "sk-xr-v1-wrong" not in body["error"]["message"]
    missing = httpx.post(f"{gateway.url}/v1/messages", json={}, timeout=30)
    assert missing.status_code == 401
    assert missing.json()["type"] == "error"
    assert "x-api-key" in missing.json()["error"]["message"]


def test_errors_are_the_sdks_typed_exceptions(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        claude.messages.create(model="gigachat/NoSuchModel", max_tokens=50, messages=HELLO)
    assert not_found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as top_k:
        claude.messages.create(
            model=MODELS[0], max_tokens=50, messages=HELLO, extra_body={"top_k": 5}
        )
    detail = top_k.value.body["error"]["message"]  # type: ignore[index]
    assert detail.startswith("top_k is not supported:"), detail
    # A provider's refusal names the Messages API's field, not the chat request's.
    with pytest.raises(anthropic.BadRequestError) as stop:
        claude.messages.create(
            model=MODELS[0], max_tokens=50, messages=HELLO, stop_sequences=["\n\n"]
        )
    assert "'stop_sequences'" in stop.value.message
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        claude.messages.create(
            model=MODELS[0],
            max_tokens=50,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )
    assert "web_search_20250305" in server_tool.value.message
    with pytest.raises(anthropic.BadRequestError) as bad_block:
        claude.messages.create(
            model=MODELS[0],
            max_tokens=50,
            messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}],  # type: ignore[list-item]
        )
    assert "messages[0].content[0]" in bad_block.value.message


def test_provider_failures_have_anthropics_statuses(
    claude: anthropic.Anthropic, emulators: dict[str, RunningEmulator]
) -> None:
    faults = emulators["gigachat"].app[FAULTS_KEY]
    try:
        faults.status = 429
        with pytest.raises(anthropic.RateLimitError) as limited:
            claude.messages.create(model=MODELS[0], max_tokens=50, messages=HELLO)
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert limited.value.response.headers["retry-after"]
        faults.status = 500
        with pytest.raises(anthropic.InternalServerError) as failed:
            claude.messages.create(model=MODELS[0], max_tokens=50, messages=HELLO)
        assert failed.value.status_code == 500
        assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        # Cut short after the stream started: an error event, which the SDK raises.
        faults.status, faults.mode = None, "truncated"
        with (
            pytest.raises(anthropic.APIStatusError) as cut,
            claude.messages.stream(model=MODELS[0], max_tokens=50, messages=HELLO) as stream,
        ):
            stream.get_final_message()
        assert cut.value.body["type"] == "error"  # type: ignore[index]
        assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    finally:
        faults.clear()


def test_json_errors_before_the_pipeline(gateway: RunningGateway, api_key: str) -> None:
    headers = {"x-api-key": api_key, "content-type": "application/json"}
    broken = httpx.post(f"{gateway.url}/v1/messages", content=b"{", headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    no_max = httpx.post(
        f"{gateway.url}/v1/messages", json={"model": MODELS[0], "messages": HELLO}, headers=headers
    )
    assert no_max.status_code == 400
    assert "max_tokens" in no_max.json()["error"]["message"]


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens_uses_the_providers_tokenizer(claude: anthropic.Anthropic, model: str) -> None:
    short = claude.messages.count_tokens(model=model, messages=HELLO)
    longer = claude.messages.count_tokens(
        model=model,
        system="Ты помощник, который отвечает подробно.",
        messages=[*HELLO, {"role": "assistant", "content": "Хорошо."}, *HELLO],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_count_tokens_counts_tools_on_gigachat(claude: anthropic.Anthropic) -> None:
    tool: anthropic.types.ToolParam = {
        "name": "get_weather",
        "description": "Погода в городе",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    bare = claude.messages.count_tokens(model=MODELS[0], messages=HELLO)
    with_tool = claude.messages.count_tokens(model=MODELS[0], messages=HELLO, tools=[tool])
    assert with_tool.input_tokens > bare.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="yandex/no-such-model", messages=HELLO)
