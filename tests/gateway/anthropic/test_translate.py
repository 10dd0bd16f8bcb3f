"""Messages requests to chat requests and back, without a network."""

from __future__ import annotations

import msgspec
import pytest

from xrouter.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    UpstreamError,
)
from xrouter.gateway.anthropic.errors import anthropic_status, error_body
from xrouter.gateway.anthropic.translate import PARAM_NAMES, chat_request, message_from
from xrouter.gateway.anthropic.wire import MessagesRequest
from xrouter.gateway.translation import relocate
from xrouter.gateway.wire import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    FunctionCall,
    PromptTokensDetails,
    ResponseMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)


def request(**fields: object) -> MessagesRequest:
    body = {"model": "gigachat/GigaChat-2-Max", "max_tokens": 100, **fields}
    return msgspec.convert(body, MessagesRequest)


def test_tool_results_come_before_the_rest_of_the_user_turn() -> None:
    translation = chat_request(
        request(
            system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            messages=[
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "text", "text": "t"},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"},
                        {"type": "text", "text": "next"},
                    ],
                },
            ],
        )
    )
    assert translation.chat.messages == [
        SystemMessage("A\n\nB"),
        UserMessage("q"),
        AssistantMessage("t", [ToolCall("toolu_1", FunctionCall("f", '{"a":1}'))]),
        ToolMessage("r", "toolu_1"),
        UserMessage("next"),
    ]
    assert translation.origins == [
        "system",
        "messages[0]",
        "messages[1]",
        "messages[2].content[0]",
        "messages[2]",
    ]


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [(1024, "low"), (4096, "low"), (8000, "medium"), (16384, "medium"), (32000, "high")],
)
def test_thinking_budgets_become_efforts(thinking: int, effort: str) -> None:
    translation = chat_request(
        request(
            messages=[{"role": "user", "content": "q"}],
            thinking={"type": "enabled", "budget_tokens": thinking},
        )
    )
    assert translation.chat.reasoning_effort == effort


def test_parallel_calls_follow_disable_parallel_tool_use() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    messages = [{"role": "user", "content": "q"}]
    allowed = chat_request(request(messages=messages, tools=[tool]))
    assert allowed.chat.parallel_tool_calls is True
    disabled = chat_request(
        request(
            messages=messages,
            tools=[tool],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )
    )
    assert (disabled.chat.parallel_tool_calls, disabled.chat.tool_choice) == (False, "required")


def test_errors_point_at_the_clients_fields() -> None:
    origins = ["system", "messages[0]", "messages[2].content[1]"]
    moved = relocate(
        InvalidRequestError("bad 'messages[2].content'", param="messages[2].content"), origins
    )
    assert moved.param == "messages[2].content[1].content"
    assert moved.message == "bad 'messages[2].content[1].content'"
    renamed = relocate(InvalidRequestError("no 'stop'", param="stop"), origins, PARAM_NAMES)
    assert (renamed.param, renamed.message) == ("stop_sequences", "no 'stop_sequences'")


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequestError("x"), 400, "invalid_request_error"),
        (AuthenticationError("x"), 401, "authentication_error"),
        (PayloadTooLargeError("x"), 413, "request_too_large"),
        (UpstreamError("x", provider="p", status=429), 429, "rate_limit_error"),
        (UpstreamError("x", provider="p"), 500, "api_error"),
        (UpstreamError("x", provider="p", status=504), 504, "timeout_error"),
        (GatewayError("x"), 500, "api_error"),
    ],
)
def test_statuses_are_anthropics(error: GatewayError, status: int, kind: str) -> None:
    assert anthropic_status(error) == (status, kind)
    assert error_body(error).error.type == kind


@pytest.mark.parametrize(
    ("message", "param", "shown"),
    [
        ("must be at most 4096", "max_tokens", "max_tokens: must be at most 4096"),
        ("top_k is not supported.", "top_k", "top_k is not supported."),
        ("no 'stop_sequences'", "stop_sequences", "no 'stop_sequences'"),
        ("max_tokens_x is unknown", "max_tokens", "max_tokens: max_tokens_x is unknown"),
    ],
)
def test_an_error_names_its_parameter_once(message: str, param: str, shown: str) -> None:
    # Anthropic's errors have no param field: the message carries it, but never twice.
    assert error_body(InvalidRequestError(message, param=param)).error.message == shown


def test_usage_counts_cache_reads_apart() -> None:
    usage = Usage(100, 7, 107, prompt_tokens_details=PromptTokensDetails(60))
    completion = ChatCompletion(
        "c",
        0,
        "gigachat/GigaChat-2-Max",
        [
            Choice(
                0,
                ResponseMessage(None, tool_calls=[ToolCall("call_1", FunctionCall("f", "{}"))]),
                "tool_calls",
            )
        ],
        usage,
    )
    message = message_from(completion, "msg_1", "gigachat/GigaChat-2-Max")
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (40, 60)
    assert message.usage.output_tokens == 7
    assert [block.id for block in message.content] == ["call_1"]  # type: ignore[union-attr]
