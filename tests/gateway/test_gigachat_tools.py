"""Tool calling through the gateway to GigaChat, with the official openai SDK as the client."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

MODEL = "gigachat/GigaChat-2-Max"
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Текущая погода в городе",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Ты помощник."},
    {"role": "user", "content": "Какая погода в Казани?"},
]


def test_tools_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {
        "city": "Какая погода в Казани?",
        "unit": "celsius",
    }
    history: list[Any] = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": -3}'},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop"
    text = answer.choices[0].message.content or ""
    assert "get_weather" in text
    assert '"temperature": -3' in text
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


def test_tool_call_ids_are_stable_across_requests_and_streams(client: openai.OpenAI) -> None:
    ids = set()
    for _ in range(2):
        completion = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER])
        ids.add((completion.choices[0].message.tool_calls or [])[0].id)
        stream = client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=[WEATHER], stream=True
        )
        for chunk in stream:
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                ids.add(delta.id)
    assert len(ids) == 1


def test_streaming_with_tools(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    [delta] = deltas
    assert delta.index == 0
    assert (delta.id or "").startswith("call_")
    assert delta.type == "function"
    assert delta.function is not None
    assert delta.function.name == "get_weather"
    arguments = json.loads(delta.function.arguments or "")
    assert arguments["city"] == "Какая погода в Казани?"
    reasons = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert reasons == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    # The streamed call is answered, and the answer streams as text.
    history: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": delta.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": delta.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": delta.id, "content": "минус три"},
    ]
    answer = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert "минус три" in text


def test_parallel_calls_from_another_model_are_replayed(client: openai.OpenAI) -> None:
    """A history made with a model that calls tools in parallel still continues on GigaChat."""
    history: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Ab12",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Казань"}'},
                },
                {
                    "id": "call_Cd34",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_Cd34", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_Ab12", "content": '{"temperature": -3}'},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER, TIME])
    assert answer.choices[0].finish_reason == "stop"
    # Results are replayed in the calls' order, whatever order the tool messages came in: the
    # last turn GigaChat sees is get_time's.
    assert "get_time" in (answer.choices[0].message.content or "")
    assert "12:00" in (answer.choices[0].message.content or "")


def test_tool_choice(client: openai.OpenAI) -> None:
    named = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert (named.choices[0].message.tool_calls or [])[0].function.name == "get_time"
    required = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[TIME], tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    none = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop"
    assert none.choices[0].message.tool_calls is None
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=[WEATHER, TIME], tool_choice="required"
        )
    assert caught.value.body["param"] == "tool_choice"  # type: ignore[index]


def test_broken_tool_history_is_a_clear_400(client: openai.OpenAI) -> None:
    history: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ],
        },
        {"role": "user", "content": "Где результат?"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=history, tools=[TIME])
    assert caught.value.body["param"] == "messages[2].tool_calls[0]"  # type: ignore[index]
    assert "call_1" in caught.value.body["message"]  # type: ignore[index]


def test_structured_output_and_reasoning_effort(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        reasoning_effort="low",
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "schema": {"type": "object", "properties": {"t": {"type": "number"}}},
            },
        },
    )
    assert completion.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, response_format={"type": "json_object"}
        )
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
