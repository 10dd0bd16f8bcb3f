"""YandexGPT chat mapping without a network: tools, tool history, structured output,
reasoning, tool calls in answers and streams, usage, and every error body form."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from xrouter.errors import InvalidRequestError, UpstreamError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.yandex_chat import completion_payload
from xrouter.providers.yandex_wire import YandexStreamDecoder, chat_reply, error

URI = "gpt://b1gfolder/yandexgpt/latest"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Погода",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def payload(**fields: Any) -> dict[str, Any]:
    body = {"model": "yandex/yandexgpt", "messages": [{"role": "user", "content": "Привет"}]}
    request = msgspec.json.decode(json.dumps({**body, **fields}), type=ChatCompletionRequest)
    return completion_payload(request, URI)


def test_tools_choice_and_parallel_calls() -> None:
    body = payload(tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False)
    assert body["tools"] == [
        {"function": WEATHER["function"]},
        {"function": {"name": "get_time"}},
    ]
    assert body["toolChoice"] == {"mode": "REQUIRED"}
    assert body["parallelToolCalls"] is False
    named = payload(
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert named["toolChoice"] == {"functionName": "get_weather"}
    assert payload(tools=[WEATHER], tool_choice="none")["toolChoice"] == {"mode": "NONE"}
    assert "toolChoice" not in payload(tools=[WEATHER])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"function": {"name": "nope"}}}, "tool_choice"),
        ({"top_p": 0.5}, "top_p"),
        ({"stop": ["конец"]}, "stop"),
        ({"n": 2}, "n"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_refusals_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        payload(**fields)
    assert caught.value.param == param


def test_tool_history_maps_results_to_function_names() -> None:
    messages = [
        {"role": "system", "content": "Ты помощник"},
        {"role": "user", "content": "Погода и время в Сочи?"},
        {
            "role": "assistant",
            "content": "Сейчас узнаю.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Сочи"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        # Results may come in any order; each is matched by its call id.
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {
            "role": "tool",
            "tool_call_id": "call_a",
            "content": [{"type": "text", "text": '{"t": 21}'}],
        },
        {"role": "user", "content": "Спасибо"},
    ]
    body = payload(messages=messages, tools=[WEATHER, TIME])
    assert body["messages"] == [
        {"role": "system", "text": "Ты помощник"},
        {"role": "user", "text": "Погода и время в Сочи?"},
        {"role": "assistant", "text": "Сейчас узнаю."},
        {
            "role": "assistant",
            "toolCallList": {
                "toolCalls": [
                    {"functionCall": {"name": "get_weather", "arguments": {"city": "Сочи"}}},
                    {"functionCall": {"name": "get_time", "arguments": {}}},
                ]
            },
        },
        {
            "role": "user",
            "toolResultList": {
                "toolResults": [
                    {"functionResult": {"name": "get_time", "content": "12:00"}},
                    {"functionResult": {"name": "get_weather", "content": '{"t": 21}'}},
                ]
            },
        },
        {"role": "user", "text": "Спасибо"},
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "call_x", "content": "1"}], "messages[0].tool_call_id"),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1]"},
                        }
                    ],
                }
            ],
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_bad_tool_history_is_400(messages: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        payload(messages=messages)
    assert caught.value.param == param


def test_options_json_modes_and_reasoning() -> None:
    options = payload(temperature=2.0, max_completion_tokens=64, reasoning_effort="high")
    assert options["completionOptions"] == {
        "stream": False,
        "temperature": 1.0,
        "maxTokens": "64",
        "reasoningOptions": {"mode": "ENABLED_HIDDEN"},
    }
    off = payload(reasoning_effort="none")["completionOptions"]["reasoningOptions"]
    assert off == {"mode": "DISABLED"}
    assert payload(response_format={"type": "json_object"})["jsonObject"] is True
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    structured = payload(
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    )
    assert structured["jsonSchema"] == {"schema": schema}
    assert "jsonObject" not in payload(response_format={"type": "text"})


TOOL_ANSWER = {
    "result": {
        "alternatives": [
            {
                "message": {
                    "role": "assistant",
                    "toolCallList": {
                        "toolCalls": [
                            {
                                "functionCall": {
                                    "name": "get_weather",
                                    "arguments": {"city": "Сочи"},
                                }
                            },
                            {"functionCall": {"name": "get_time", "arguments": {}}},
                        ]
                    },
                },
                "status": "ALTERNATIVE_STATUS_TOOL_CALLS",
            }
        ],
        "usage": {
            "inputTextTokens": "20",
            "completionTokens": "9",
            "totalTokens": "29",
            "completionTokensDetails": {"reasoningTokens": "4"},
        },
        "modelVersion": "23.10.2025",
    }
}


def test_tool_call_answer_has_stable_generated_ids() -> None:
    reply = chat_reply(json.dumps(TOOL_ANSWER, ensure_ascii=False).encode())
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert not isinstance(calls, msgspec.UnsetType)
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        ("get_weather", {"city": "Сочи"}),
        ("get_time", {}),
    ]
    assert all(call.id.startswith("call_") for call in calls)
    assert len({call.id for call in calls}) == 2
    again = chat_reply(json.dumps(TOOL_ANSWER).encode()).choices[0].message.tool_calls
    assert not isinstance(again, msgspec.UnsetType)
    assert [call.id for call in again] == [call.id for call in calls]
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        20,
        9,
        29,
    )
    assert reply.usage.completion_tokens_details.reasoning_tokens == 4  # type: ignore[union-attr]
    assert reply.model_version == "23.10.2025"

    decoder = YandexStreamDecoder()
    [delta] = decoder.feed(json.dumps(TOOL_ANSWER).encode())
    assert delta.finish_reason == "tool_calls"
    assert delta.tool_calls is not None
    assert [call.id for call in delta.tool_calls] == [call.id for call in calls]
    assert [call.index for call in delta.tool_calls] == [0, 1]
    assert decoder.close() == []


@pytest.mark.parametrize(
    ("status", "finish"),
    [
        ("ALTERNATIVE_STATUS_FINAL", "stop"),
        ("ALTERNATIVE_STATUS_TRUNCATED_FINAL", "length"),
        ("ALTERNATIVE_STATUS_CONTENT_FILTER", "content_filter"),
    ],
)
def test_status_mapping(status: str, finish: str) -> None:
    answer = {
        "result": {
            "alternatives": [{"message": {"role": "assistant", "text": "x"}, "status": status}]
        }
    }
    assert chat_reply(json.dumps(answer).encode()).choices[0].finish_reason == finish


def test_malformed_usage_is_a_malformed_response() -> None:
    answer = {
        "result": {
            "alternatives": [{"message": {"text": "x"}, "status": "ALTERNATIVE_STATUS_FINAL"}],
            "usage": {"inputTextTokens": "много"},
        }
    }
    with pytest.raises(UpstreamError) as caught:
        chat_reply(json.dumps(answer).encode())
    assert caught.value.code == "upstream_malformed_response"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"error": {"grpcCode": 3, "httpCode": 400, "message": "invalid model_uri"}},
            (400, "upstream_bad_request", False),
        ),
        (
            401,
            {"error": {"grpcCode": 16, "httpCode": 401, "message": "Unknown api key 'AQVNsecret'"}},
            (502, "upstream_auth_failed", False),
        ),
        (
            403,
            {"code": 7, "message": "Permission denied", "details": []},
            (502, "upstream_permission_denied", True),
        ),
        (404, {"code": 5, "message": "Not found"}, (404, "model_not_found", False)),
        (
            429,
            {"error": {"grpcCode": 8, "httpCode": 429, "message": "quota limit exceed"}},
            (429, "upstream_rate_limited", True),
        ),
        (
            500,
            {"error": {"grpcCode": 13, "httpCode": 500, "message": "Internal"}},
            (502, "upstream_server_error", True),
        ),
        (
            503,
            {"error": {"grpcCode": 14, "httpCode": 503, "message": "Unavailable"}},
            (502, "upstream_server_error", True),
        ),
        (
            504,
            {"error": {"grpcCode": 4, "httpCode": 504, "message": "Deadline"}},
            (504, "upstream_timeout", True),
        ),
    ],
)
def test_error_mapping(status: int, body: dict[str, Any], expected: tuple[int, str, bool]) -> None:
    mapped = error(status, json.dumps(body).encode(), 3.0 if status == 429 else None)
    assert (mapped.status, mapped.code, mapped.retryable) == expected
    assert "AQVNsecret" not in mapped.message
    if status == 429:
        assert mapped.headers["retry-after"] == "3"
        assert "quota limit exceed" in mapped.message


def test_non_json_error_body_and_mid_stream_grpc_error() -> None:
    assert error(502, b"<html>Bad Gateway</html>", None).status == 502
    decoder = YandexStreamDecoder()
    with pytest.raises(UpstreamError) as caught:
        decoder.feed(b'{"error":{"grpcCode":14,"message":"Unavailable"}}')
    assert (caught.value.status, caught.value.retryable) == (502, True)
