"""YandexGPT through the gateway with the ``openai`` SDK: version routing, tools, structured
output, reasoning and embeddings, against the emulator over real HTTP."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from xrouter.emulators.yandex import CONTENT_FILTER_MARKER, MODEL_VERSIONS

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Погода в городе",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
QUESTION = [{"role": "user", "content": "Какая погода в Сочи?"}]


@pytest.mark.parametrize(
    ("model", "branch"),
    [
        ("yandex/yandexgpt", "latest"),
        ("yandex/yandexgpt:latest", "latest"),
        ("yandex/yandexgpt:rc", "rc"),
        ("yandex/yandexgpt:deprecated", "deprecated"),
        ("yandex/yandexgpt-lite:rc", "rc"),
        ("yandex/yandexgpt-32k:deprecated", "deprecated"),
        ("yandex/gpt-oss-120b", "latest"),
    ],
)
def test_versions_route_to_their_branch(client: openai.OpenAI, model: str, branch: str) -> None:
    family = model.removeprefix("yandex/").split(":")[0]
    served = MODEL_VERSIONS[family, branch]
    reply = client.chat.completions.create(model=model, messages=QUESTION)  # type: ignore[arg-type]
    assert reply.model == model
    assert reply.system_fingerprint == served
    stream = client.chat.completions.create(model=model, messages=QUESTION, stream=True)  # type: ignore[arg-type]
    fingerprints = {chunk.system_fingerprint for chunk in stream}
    assert fingerprints == {served}  # in every chunk, the first (the role) included


def test_versions_not_published_are_404(client: openai.OpenAI) -> None:
    for model in (
        "yandex/gpt-oss-120b:rc",
        "yandex/yandexgpt:nightly",
        "yandex/text-search-doc:rc",
    ):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=model, messages=QUESTION)  # type: ignore[arg-type]


def test_models_list_families_with_versions(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    for family, branch in MODEL_VERSIONS:
        assert f"yandex/{family}" in ids
        assert f"yandex/{family}:{branch}" in ids


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Какая погода в Сочи?"}  # type: ignore[union-attr]
    second = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=[
            *QUESTION,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"t": 21}'},
        ],  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.choices[0].finish_reason == "stop"
    answer = second.choices[0].message.content or ""
    assert "get_weather" in answer
    assert '{"t": 21}' in answer


def test_streamed_tool_call_matches_the_plain_one(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(
        model="yandex/yandexgpt:rc",
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    [expected] = plain.choices[0].message.tool_calls or []
    stream = client.chat.completions.create(
        model="yandex/yandexgpt:rc",
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                if delta.function is not None:
                    entry["name"] += delta.function.name or ""
                    entry["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert reasons == ["tool_calls"]
    assert calls == {
        0: {
            "id": expected.id,
            "name": "get_weather",
            "arguments": expected.function.arguments,  # type: ignore[union-attr]
        }
    }


def test_json_schema_reasoning_and_usage_details(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=QUESTION,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        reasoning_effort="high",
    )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "Какая погода в Сочи?"}
    assert reply.usage is not None
    assert reply.usage.completion_tokens_details is not None
    assert (reply.usage.completion_tokens_details.reasoning_tokens or 0) > 0
    plain = client.chat.completions.create(
        model="yandex/yandexgpt", messages=QUESTION, response_format={"type": "json_object"}
    )  # type: ignore[arg-type]
    assert "answer" in json.loads(plain.choices[0].message.content or "")


def test_content_filter_and_length(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": f"Расскажи {CONTENT_FILTER_MARKER}"}]
    stream = client.chat.completions.create(
        model="yandex/yandexgpt", messages=messages, stream=True
    )  # type: ignore[arg-type]
    chunks = [chunk for chunk in stream if chunk.choices]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "К сожалению" in "".join(c.choices[0].delta.content or "" for c in chunks)
    short = client.chat.completions.create(
        model="yandex/yandexgpt-lite",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=2,
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None
    assert short.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"top_p": 0.5}, "top_p"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
    ],
)
def test_unmappable_requests_are_400(
    http: httpx.Client, body: dict[str, object], param: str
) -> None:
    request = {"model": "yandex/yandexgpt", "messages": QUESTION, **body}
    response = http.post("/v1/chat/completions", json=request)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_embeddings_doc_and_query_differ(client: openai.OpenAI) -> None:
    doc = client.embeddings.create(
        model="yandex/text-search-doc", input="Озеро Байкал", encoding_format="float"
    )
    query = client.embeddings.create(
        model="yandex/text-search-query", input="Озеро Байкал", encoding_format="float"
    )
    assert len(doc.data[0].embedding) == len(query.data[0].embedding) == 256
    assert doc.data[0].embedding != query.data[0].embedding
    sized = client.embeddings.create(
        model="yandex/text-search-doc", input="Озеро", dimensions=256, encoding_format="float"
    )
    assert len(sized.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="yandex/text-search-doc", input="Озеро", dimensions=100)
    assert "dim" in str(caught.value)
