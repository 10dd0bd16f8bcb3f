"""Tool use through /v1/messages with the anthropic SDK: round trips, parallel calls, and what
GigaChat is really sent when a history holds several calls made in one turn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.servers import RunningGateway
from xrouter.emulators.gigachat import STATS_KEY
from xrouter.emulators.server import RunningEmulator

GIGACHAT = "gigachat/GigaChat-2-Max"
YANDEX = "yandex/yandexgpt"
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Текущая погода в городе",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME: ToolParam = {
    "name": "get_time",
    "description": "Текущее время",
    "input_schema": {"type": "object", "properties": {}},
}
QUESTION: list[MessageParam] = [{"role": "user", "content": "Погода и время в Казани?"}]


@pytest.fixture
def claude(gateway: RunningGateway, api_key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=api_key, max_retries=0) as sdk:
        yield sdk


def received_by_gigachat(emulators: dict[str, RunningEmulator], marker: str) -> list[Any]:
    """The messages of the latest chat request GigaChat got whose text contains ``marker``."""
    chats = list(emulators["gigachat"].app[STATS_KEY].recent_chats)
    return next(m for m in reversed(chats) if any(marker in str(x.get("content")) for x in m))


def test_two_tools_called_in_one_turn_round_trip(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(
        model=YANDEX, max_tokens=300, messages=QUESTION, tools=[WEATHER, TIME]
    )
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert calls[0].input == {"city": "Погода и время в Казани?"}
    assert calls[0].id != calls[1].id
    # The streamed turn reassembles into the same calls, ids included.
    with claude.messages.stream(
        model=YANDEX, max_tokens=300, messages=QUESTION, tools=[WEATHER, TIME]
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert [(b.id, b.input) for b in streamed.content if b.type == "tool_use"] == [
        (call.id, call.input) for call in calls
    ]
    results: list[Any] = [
        {"type": "tool_result", "tool_use_id": calls[0].id, "content": '{"temperature": -3}'},
        {
            "type": "tool_result",
            "tool_use_id": calls[1].id,
            "content": [{"type": "text", "text": "12:00"}],
        },
    ]
    history: list[MessageParam] = [
        *QUESTION,
        {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
        {"role": "user", "content": results},
    ]
    answer = claude.messages.create(
        model=YANDEX, max_tokens=300, messages=history, tools=[WEATHER, TIME]
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
    text = answer.content[0].text
    # Both results reached the model, each under its own function.
    assert "get_weather, get_time" in text
    assert '{"temperature": -3}' in text
    assert "12:00" in text


def test_gigachat_round_trip_keeps_the_function_state(
    claude: anthropic.Anthropic, emulators: dict[str, RunningEmulator]
) -> None:
    first = claude.messages.create(
        model=GIGACHAT, max_tokens=300, messages=QUESTION, tools=[WEATHER]
    )
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.id.startswith("call_")
    history: list[MessageParam] = [
        *QUESTION,
        {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "минус три"}],
        },
    ]
    answer = claude.messages.create(
        model=GIGACHAT, max_tokens=300, messages=history, tools=[WEATHER]
    )
    assert answer.content[0].type == "text"
    assert "минус три" in answer.content[0].text
    sent = received_by_gigachat(emulators, "минус три")
    assert sent[-2]["function_call"] == {"name": "get_weather", "arguments": call.input}
    assert sent[-2]["functions_state_id"]  # restored from the tool_use id
    assert sent[-1] == {
        "role": "function",
        "name": "get_weather",
        "content": '{"result": "минус три"}',
    }


def test_parallel_calls_reach_gigachat_each_under_its_own_call(
    claude: anthropic.Anthropic, emulators: dict[str, RunningEmulator]
) -> None:
    """Regression: a history with two calls made in one turn (by another model) gives GigaChat
    both calls and both results, each result after its own call, none merged or dropped."""
    history: list[MessageParam] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Сейчас узнаю."},
                {
                    "type": "tool_use",
                    "id": "toolu_A1",
                    "name": "get_weather",
                    "input": {"city": "Казань"},
                },
                {"type": "tool_use", "id": "toolu_B2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                # Results may come in any order; each is matched to its call by id.
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_B2",
                    "content": "12:00 parallel-marker",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_A1",
                    "content": '{"temperature": -3}',
                },
                {"type": "text", "text": "И что скажешь?"},
            ],
        },
    ]
    claude.messages.create(model=GIGACHAT, max_tokens=300, messages=history, tools=[WEATHER, TIME])
    sent = received_by_gigachat(emulators, "parallel-marker")
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": "Сейчас узнаю.",
            "function_call": {"name": "get_weather", "arguments": {"city": "Казань"}},
        },
        {"role": "function", "name": "get_weather", "content": '{"temperature": -3}'},
        {
            "role": "assistant",
            "content": "",
            "function_call": {"name": "get_time", "arguments": {}},
        },
        {"role": "function", "name": "get_time", "content": '{"result": "12:00 parallel-marker"}'},
        {"role": "user", "content": "И что скажешь?"},
    ]


def test_a_failed_tool_says_so(
    claude: anthropic.Anthropic, emulators: dict[str, RunningEmulator]
) -> None:
    first = claude.messages.create(model=GIGACHAT, max_tokens=300, messages=QUESTION, tools=[TIME])
    [call] = [block for block in first.content if block.type == "tool_use"]
    failure = {
        "type": "tool_result",
        "tool_use_id": call.id,
        "is_error": True,
        "content": "timeout-7",
    }
    history: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [failure]},
    ]
    claude.messages.create(model=GIGACHAT, max_tokens=300, messages=history, tools=[TIME])
    sent = received_by_gigachat(emulators, "timeout-7")
    assert json.loads(sent[-1]["content"]) == {"error": "timeout-7"}


def test_tool_choice_is_honoured_or_refused(claude: anthropic.Anthropic) -> None:
    named = claude.messages.create(
        model=GIGACHAT,
        max_tokens=300,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [b.name for b in named.content if b.type == "tool_use"] == ["get_time"]
    single = claude.messages.create(
        model=GIGACHAT, max_tokens=300, messages=QUESTION, tools=[TIME], tool_choice={"type": "any"}
    )
    assert single.stop_reason == "tool_use"
    none = claude.messages.create(
        model=GIGACHAT,
        max_tokens=300,
        messages=QUESTION,
        tools=[TIME],
        tool_choice={"type": "none"},
    )
    assert none.stop_reason == "end_turn"
    assert all(block.type == "text" for block in none.content)
    # GigaChat can force one named function, not "one of several": refused, never downgraded.
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model=GIGACHAT,
            max_tokens=300,
            messages=QUESTION,
            tools=[WEATHER, TIME],
            tool_choice={"type": "any"},
        )
    assert "tool_choice" in refused.value.message
    # YandexGPT can: "any" with several tools is honoured there.
    forced = claude.messages.create(
        model=YANDEX,
        max_tokens=300,
        messages=[{"role": "user", "content": "Просто поговорим"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_weather"]


def test_a_result_for_an_unknown_call_is_a_clear_400(claude: anthropic.Anthropic) -> None:
    history: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=GIGACHAT, max_tokens=100, messages=history, tools=[TIME])
    assert "toolu_9" in caught.value.message
    assert "messages[2].content[0]" in caught.value.message
