"""Chat completions through the gateway over real HTTP, with the official openai SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.servers import RunningGateway

MODELS = ["gigachat/GigaChat-2-Max", "yandex/yandexgpt", "yandex/yandexgpt:rc"]


@pytest.mark.parametrize("model", MODELS)
def test_chat_completion_through_openai_sdk(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Отвечай кратко."},
            {"role": "user", "content": "Привет! Как дела?"},
        ],
        temperature=0.3,
        max_tokens=200,
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == model
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.completion_tokens > 0
    assert completion.system_fingerprint  # the upstream's model version


def test_same_request_same_reply_in_json_and_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Расскажи про Москву и Санкт-Петербург"}]
    for model in MODELS:
        whole = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        stream = client.chat.completions.create(model=model, messages=messages, stream=True)  # type: ignore[arg-type]
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
        assert "".join(pieces) == whole.choices[0].message.content, model


@pytest.mark.parametrize("model", MODELS)
def test_stream_through_openai_sdk_with_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Напиши длинный ответ про погоду"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 2, "the reply must arrive in several chunks"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_wire_framing(http: httpx.Client) -> None:
    body = {
        "model": "gigachat/GigaChat-2",
        "stream": True,
        "messages": [{"role": "user", "content": "Привет"}],
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        chunk = json.loads(event.removeprefix("data: "))
        assert chunk["object"] == "chat.completion.chunk"
        assert "usage" not in chunk  # only with stream_options.include_usage


def test_models_list(client: openai.OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    assert "gigachat/GigaChat-2-Max" in models
    assert "gigachat/Embeddings" in models
    for version in ("", ":latest", ":rc", ":deprecated"):
        assert f"yandex/yandexgpt{version}" in models
    assert all(model.object == "model" for model in models.values())
    # Providers configured with credentials are not marked as emulated.
    assert not any(getattr(model, "emulated", False) for model in models.values())


@pytest.mark.parametrize(
    "model", ["gigachat/GigaChat-2-Max", "gigachat/Embeddings", "yandex/yandexgpt:rc"]
)
def test_a_model_is_retrieved_as_the_list_shows_it(client: openai.OpenAI, model: str) -> None:
    # The SDK sends the id's "/" as %2F; the id is the whole rest of the path.
    listed = {item.id: item for item in client.models.list()}
    retrieved = client.models.retrieve(model)
    assert retrieved == listed[model]
    assert (retrieved.id, retrieved.object) == (model, "model")


def test_retrieving_a_model_takes_its_id_as_sent(http: httpx.Client) -> None:
    response = http.get("/v1/models/yandex/yandexgpt:latest")
    assert response.status_code == 200
    assert response.json()["id"] == "yandex/yandexgpt:latest"
    assert http.post("/v1/models/yandex/yandexgpt").status_code == 405


def test_retrieving_an_unknown_model_is_404_model_not_found(
    client: openai.OpenAI, gateway: RunningGateway
) -> None:
    for model in ("gigachat/NoSuchModel", "gpt-4o", "yandex/yandexgpt:nightly"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(model)
        assert caught.value.body == {  # type: ignore[comparison-overlap]
            "message": f"The model '{model}' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-xr-v1-" + "A" * 49) as anonymous,
        pytest.raises(openai.AuthenticationError),
    ):
        anonymous.models.retrieve("gigachat/GigaChat-2-Max")


def test_bad_key_surfaces_as_authentication_error(gateway: RunningGateway) -> None:
    bad = "sk-xr-v1-" + "A" * 49
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=bad, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.chat.completions.create(
            model="gigachat/GigaChat-2", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    for model in ("gigachat/NoSuchModel", "openai/gpt-4o", "gpt-4o", "yandex/yandexgpt:nightly"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        error = caught.value.body
        assert error["code"] == "model_not_found", model  # type: ignore[index]
        assert error["param"] == "model"  # type: ignore[index]


def test_a_model_of_the_other_kind_is_404_naming_its_kind(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(
            model="gigachat/Embeddings", messages=[{"role": "user", "content": "x"}]
        )
    assert chat.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "serves embeddings only, not chat" in chat.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as embeddings:
        client.embeddings.create(model="yandex/yandexgpt", input="x")
    assert "serves chat only, not embeddings" in embeddings.value.body["message"]  # type: ignore[index]


def test_revoked_key_is_refused(gateway: RunningGateway) -> None:
    created = gateway.create_key("to revoke")
    headers = {"Authorization": f"Bearer {created.key}"}
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200
    gateway.revoke_key(created.info.id)
    deadline = time.monotonic() + 5
    while httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.05)
