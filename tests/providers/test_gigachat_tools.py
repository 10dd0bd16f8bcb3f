"""OpenAI tools <-> GigaChat functions, without a network: requests, replies, stream chunks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.base import ModelTarget, StreamDelta
from xrouter.providers.gigachat import GigaChatConfig, GigaChatProvider
from xrouter.providers.gigachat_tools import function_result, state_id_of, tool_call_id

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gigachat"
TARGET = ModelTarget("gigachat", "GigaChat-2-Max")
STATE = "0199e210-7c1f-7d7a-9c2b-3f1e5a6b7c8d"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Погода в городе",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


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


def payload(provider: GigaChatProvider, **fields: object) -> dict[str, Any]:
    upstream = provider.chat_request(chat(**fields), TARGET)
    return dict(json.loads(upstream.body or b""))


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tools_become_functions_with_auto_sent_explicitly(provider: GigaChatProvider) -> None:
    sent = payload(provider, tools=[WEATHER, TIME])
    assert sent["functions"] == [
        {
            "name": "get_weather",
            "parameters": WEATHER["function"]["parameters"],  # type: ignore[index]
            "description": "Погода в городе",
        },
        {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    ]
    assert sent["function_call"] == "auto"
    assert "functions" not in payload(provider)


@pytest.mark.parametrize(
    ("tool_choice", "tools", "expected"),
    [
        ("auto", [WEATHER, TIME], "auto"),
        ("none", [WEATHER, TIME], "none"),
        (
            {"type": "function", "function": {"name": "get_time"}},
            [WEATHER, TIME],
            {"name": "get_time"},
        ),
        # "required" with a single tool is the same as naming it.
        ("required", [WEATHER], {"name": "get_weather"}),
    ],
)
def test_tool_choice(
    provider: GigaChatProvider, tool_choice: object, tools: list[object], expected: object
) -> None:
    assert payload(provider, tools=tools, tool_choice=tool_choice)["function_call"] == expected


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"tools": [WEATHER, TIME], "tool_choice": "required"}, "unsupported_value"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "invalid_value",
        ),
        ({"tool_choice": "auto"}, "invalid_value"),
    ],
)
def test_tool_choice_gigachat_cannot_honour_is_refused(
    provider: GigaChatProvider, fields: dict[str, object], code: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        provider.chat_request(chat(**fields), TARGET)
    assert (caught.value.param, caught.value.code) == ("tool_choice", code)


def test_history_with_a_tool_round_trip(provider: GigaChatProvider) -> None:
    call_id = tool_call_id("get_weather", '{"city":"Казань"}', STATE)
    messages = [
        {"role": "user", "content": "Погода в Казани?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call(call_id, "get_weather", '{"city":"Казань"}')],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"t": -3}'},
    ]
    sent = payload(provider, messages=messages, tools=[WEATHER])
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "function_call": {"name": "get_weather", "arguments": {"city": "Казань"}},
            "functions_state_id": STATE,
        },
        {"role": "function", "name": "get_weather", "content": '{"t": -3}'},
    ]


def test_several_tool_calls_are_replayed_one_per_turn(provider: GigaChatProvider) -> None:
    messages = [
        {"role": "user", "content": "Погода и время?"},
        {
            "role": "assistant",
            "content": "Сейчас узнаю.",
            "tool_calls": [
                call("call_a", "get_weather", '{"city":"Омск"}'),
                call("call_b", "get_time", ""),
            ],
        },
        # Results may come in any order; each stays under its own call.
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "+5"}]},
        {"role": "user", "content": "Спасибо"},
    ]
    sent = payload(provider, messages=messages, tools=[WEATHER, TIME])
    assert sent["messages"] == [
        {"role": "user", "content": "Погода и время?"},
        {
            "role": "assistant",
            "content": "Сейчас узнаю.",
            "function_call": {"name": "get_weather", "arguments": {"city": "Омск"}},
        },
        {"role": "function", "name": "get_weather", "content": '{"result": "+5"}'},
        {
            "role": "assistant",
            "content": "",
            "function_call": {"name": "get_time", "arguments": {}},
        },
        {"role": "function", "name": "get_time", "content": '{"result": "12:00"}'},
        {"role": "user", "content": "Спасибо"},
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [call("call_a", "get_time", "{}")]},
                {"role": "user", "content": "no result"},
            ],
            "messages[1].tool_calls[0]",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [call("call_a", "get_time", "{}")]},
                {"role": "tool", "tool_call_id": "call_z", "content": "1"},
            ],
            "messages[2].tool_call_id",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [call("call_a", "get_time", "{}")]},
                {"role": "tool", "tool_call_id": "call_a", "content": "1"},
                {"role": "tool", "tool_call_id": "call_a", "content": "2"},
            ],
            "messages[3].tool_call_id",
        ),
        ([{"role": "tool", "tool_call_id": "call_a", "content": "1"}], "messages[0]"),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [call("call_a", "get_time", "[1, 2]")]},
                {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            ],
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
def test_inconsistent_tool_history_is_refused(
    provider: GigaChatProvider, messages: list[object], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        provider.chat_request(chat(messages=messages), TARGET)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("output", "sent"),
    [
        ('{"t": 5}', '{"t": 5}'),
        ("plain text", '{"result": "plain text"}'),
        ("[1, 2]", '{"result": [1, 2]}'),
        ('"quoted"', '{"result": "quoted"}'),
        ("", '{"result": ""}'),
    ],
)
def test_function_results_are_json_objects(output: str, sent: str) -> None:
    assert function_result(output) == sent


@pytest.mark.parametrize("state", [STATE, "not-a-uuid: opaque/state", None])
def test_tool_call_ids_are_stable_and_carry_the_state(state: str | None) -> None:
    first = tool_call_id("get_weather", '{"city":"Омск"}', state)
    assert first == tool_call_id("get_weather", '{"city":"Омск"}', state)
    assert first.startswith("call_")
    assert state_id_of(first) == state
    assert tool_call_id("get_weather", '{"city":"Тверь"}', None) != tool_call_id(
        "get_weather", '{"city":"Омск"}', None
    )


def test_foreign_tool_call_ids_carry_no_state() -> None:
    assert state_id_of("call_abc123") is None
    assert state_id_of("call_gs" + "z" * 32) is None
    assert state_id_of("call_gx!!!") is None


def test_function_call_reply_becomes_a_tool_call(provider: GigaChatProvider) -> None:
    reply = provider.chat_reply((FIXTURES / "function_call_response.json").read_bytes(), TARGET)
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [tool_call] = choice.message.tool_calls  # type: ignore[misc]
    assert tool_call.function.name == "weather_forecast"
    assert json.loads(tool_call.function.arguments) == {"location": "Москва", "num_days": 10}
    assert state_id_of(tool_call.id) == "0199e210-2b6c-7b8e-9d7a-6c5b4a392817"
    # The next request maps the id back to the call's name and state.
    history = [
        {"role": "user", "content": "Погода?"},
        {"role": "assistant", "tool_calls": [msgspec.to_builtins(tool_call)]},
        {"role": "tool", "tool_call_id": tool_call.id, "content": '{"t": 1}'},
    ]
    sent = payload(provider, messages=history)
    assert sent["messages"][1]["functions_state_id"] == "0199e210-2b6c-7b8e-9d7a-6c5b4a392817"


def test_streamed_function_call_is_one_complete_tool_call_delta(
    provider: GigaChatProvider,
) -> None:
    decoder = provider.stream_decoder(TARGET)
    deltas: list[StreamDelta] = []
    for line in (FIXTURES / "stream_function_call.txt").read_bytes().splitlines():
        deltas.extend(decoder.feed(line))
    deltas.extend(decoder.close())
    [delta] = deltas
    assert delta.finish_reason == "tool_calls"
    [tool_call] = delta.tool_calls  # type: ignore[misc]
    assert tool_call.index == 0
    assert tool_call.type == "function"
    assert tool_call.function.name == "weather_forecast"  # type: ignore[union-attr]
    arguments = json.loads(tool_call.function.arguments)  # type: ignore[union-attr,arg-type]
    assert arguments == {"location": "Москва", "num_days": 10}
    # The same call gets the same id in a JSON reply and in a stream.
    whole = provider.chat_reply((FIXTURES / "function_call_response.json").read_bytes(), TARGET)
    assert tool_call.id == whole.choices[0].message.tool_calls[0].id  # type: ignore[index]
    assert delta.usage is not None
    assert delta.usage.prompt_tokens_details.cached_tokens == 12  # type: ignore[union-attr]


def test_finish_reason_error_is_a_retryable_upstream_error(provider: GigaChatProvider) -> None:
    body = {"choices": [{"message": {"content": ""}, "index": 0, "finish_reason": "error"}]}
    with pytest.raises(UpstreamError) as caught:
        provider.chat_reply(json.dumps(body).encode(), TARGET)
    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert caught.value.code == "upstream_invalid_function_call"
    decoder = provider.stream_decoder(TARGET)
    chunk = {"choices": [{"delta": {"content": ""}, "index": 0, "finish_reason": "error"}]}
    with pytest.raises(UpstreamError):
        decoder.feed(b"data: " + json.dumps(chunk).encode())
