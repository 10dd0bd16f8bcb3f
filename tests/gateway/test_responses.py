"""/v1/responses with the official openai SDK: create, stream, function calls, stored
responses and errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam

from tests.gateway.test_anthropic_tools import received_by_gigachat
from tests.servers import RunningGateway
from xrouter.emulators.server import RunningEmulator

MODELS = ["gigachat/GigaChat-2-Max", "yandex/yandexgpt:rc"]
GIGACHAT, YANDEX = MODELS
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Текущая погода в городе",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}
TIME: FunctionToolParam = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {}},
    "strict": False,
}


@pytest.mark.parametrize("model", MODELS)
def test_create(gateway: RunningGateway, client: openai.OpenAI, model: str) -> None:
    raw = client.responses.with_raw_response.create(
        model=model, instructions="Отвечай кратко.", input="Привет! Как дела?"
    )
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == model
    assert response.instructions == "Отвечай кратко."
    assert "Привет! Как дела?" in response.output_text
    [message] = response.output
    assert message.type == "message"
    assert message.role == "assistant"
    assert response.usage is not None
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    [record] = gateway.usage_records(raw.headers["x-request-id"])
    assert (record.model, record.status_code) == (model, 200)
    assert record.total_tokens == response.usage.total_tokens


@pytest.mark.parametrize("model", MODELS)
def test_stream_reassembles_the_same_response(client: openai.OpenAI, model: str) -> None:
    whole = client.responses.create(model=model, input="Расскажи о Казани", store=False)
    with client.responses.stream(model=model, input="Расскажи о Казани", store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == whole.output_text
    assert final.status == "completed"
    assert final.usage is not None
    assert whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens
    names = [event.type for event in events]
    deltas = names.count("response.output_text.delta")
    assert deltas > 1
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))


def test_function_calls_round_trip(client: openai.OpenAI) -> None:
    question = "Погода и время в Казани?"
    first = client.responses.create(model=YANDEX, input=question, tools=[WEATHER, TIME])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": question}
    with client.responses.stream(model=YANDEX, input=question, tools=[WEATHER, TIME]) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert kinds.count("response.function_call_arguments.done") == 2
    assert [(c.call_id, c.arguments) for c in streamed.output if c.type == "function_call"] == [
        (call.call_id, call.arguments) for call in calls
    ]
    history: list[Any] = [
        {"role": "user", "content": question},
        *(call.model_dump(exclude_none=True) for call in calls),
        {"type": "function_call_output", "call_id": calls[1].call_id, "output": "12:00"},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "-3"},
    ]
    answer = client.responses.create(model=YANDEX, input=history, tools=[WEATHER, TIME])
    assert answer.status == "completed"
    assert "get_weather, get_time" in answer.output_text or "get_time, get_weather" in (
        answer.output_text
    )
    assert "12:00" in answer.output_text
    assert "-3" in answer.output_text


def test_gigachat_function_call_round_trip(
    client: openai.OpenAI, emulators: dict[str, RunningEmulator]
) -> None:
    first = client.responses.create(model=GIGACHAT, input="Погода в Казани?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.call_id.startswith("call_")
    assert call.id == f"fc_{call.call_id}"
    history: list[Any] = [
        {"role": "user", "content": "Погода в Казани?"},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "минус пять"},
    ]
    answer = client.responses.create(model=GIGACHAT, input=history, tools=[WEATHER])
    assert "минус пять" in answer.output_text
    sent = received_by_gigachat(emulators, "минус пять")
    assert sent[-2]["functions_state_id"]
    assert sent[-1]["name"] == "get_weather"


def test_previous_response_id_continues_a_stored_conversation(
    gateway: RunningGateway, client: openai.OpenAI, emulators: dict[str, RunningEmulator]
) -> None:
    first = client.responses.create(model=GIGACHAT, input="Меня зовут Пётр, store-marker.")
    second = client.responses.create(
        model=GIGACHAT, input="Как меня зовут?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    sent = received_by_gigachat(emulators, "store-marker")
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == first.output_text
    assert second.usage is not None
    assert first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    # Another key cannot continue it; an unknown id is a clear 400.
    other = gateway.create_key("other").key
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other, max_retries=0) as stranger,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        stranger.responses.create(model=GIGACHAT, input="?", previous_response_id=first.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    unstored = client.responses.create(model=GIGACHAT, input="Не храни", store=False)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=GIGACHAT, input="?", previous_response_id=unstored.id)


def test_a_stored_stream_can_be_continued(client: openai.OpenAI) -> None:
    with client.responses.stream(model=YANDEX, input="Первый вопрос") as stream:
        first = stream.get_final_response()
    second = client.responses.create(model=YANDEX, input="Второй", previous_response_id=first.id)
    assert second.status == "completed"


def test_cut_short_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=GIGACHAT, input="Расскажи длинную историю", max_output_tokens=3
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as web_search:
        client.responses.create(model=GIGACHAT, input="?", tools=[{"type": "web_search"}])
    assert web_search.value.param == "tools[0].type"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gigachat/NoSuchModel", input="?")
    with pytest.raises(openai.BadRequestError) as background:
        client.responses.create(model=GIGACHAT, input="?", background=True)
    assert background.value.param == "background"
    with pytest.raises(openai.BadRequestError) as bad_item:
        client.responses.create(
            model=GIGACHAT,
            input=[{"type": "function_call_output", "call_id": 5, "output": "x"}],  # type: ignore[list-item]
        )
    assert bad_item.value.param == "input[0].call_id"
    # A provider's complaint about a translated message points at the input item.
    with pytest.raises(openai.BadRequestError) as unanswered:
        client.responses.create(
            model=GIGACHAT,
            input=[
                {"role": "user", "content": "?"},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_time",
                    "arguments": "{}",
                },
                {"role": "user", "content": "!"},
            ],
            tools=[TIME],
        )
    assert (unanswered.value.param or "").startswith("input[1]")
    # GigaChat cannot be forced to pick one of several tools: refused, not downgraded.
    with pytest.raises(openai.BadRequestError) as required:
        client.responses.create(
            model=GIGACHAT, input="?", tools=[WEATHER, TIME], tool_choice="required"
        )
    assert required.value.param == "tool_choice"


def test_raw_stream_frames_name_their_events(gateway: RunningGateway, api_key: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/responses",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": YANDEX, "input": "Привет", "stream": True},
        timeout=30,
    )
    frames = [frame.split("\n", 1) for frame in response.text.split("\n\n") if frame]
    for event, data in frames:
        assert event.removeprefix("event: ") == json.loads(data.removeprefix("data: "))["type"]
