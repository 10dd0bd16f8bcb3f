"""Prompts and completions reach the logs only for keys that opt in, one line per request."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.observability.log_records import ACCESS, access_records, records_named
from tests.servers import RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY
from xrouter.emulators.server import RunningEmulator
from xrouter.logs import JsonFormatter

CONTENT = "xrouter.content"
CHAT = "/v1/chat/completions"
MODEL = "gigachat/GigaChat-2-Max"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


@pytest.fixture(scope="module")
def logged_key(gateway: RunningGateway) -> str:
    """A key whose owner opted in to content logging."""
    service = gateway.runtime.key_service
    created = gateway.loop.run(service.create("logged content", log_content=True))
    deadline = time.monotonic() + 10
    while gateway.runtime.keys.lookup(created.key) is None:
        assert time.monotonic() < deadline, "the key never reached the gateway's cache"
        time.sleep(0.05)
    return created.key


@pytest.fixture
def logged(gateway: RunningGateway, logged_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {logged_key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as session:
        yield session


def prompt() -> str:
    return f"Расскажи про маяк {uuid.uuid4().hex}"


def records_of(caplog: pytest.LogCaptureFixture, name: str, request_id: str) -> list[Any]:
    """The records ``name`` logged for ``request_id``, once the access line is in (the
    gateway's thread writes both when the request ends, the content line last)."""
    access_records(caplog, request_id)
    time.sleep(0.05)
    return records_named(caplog, name, request_id)


def every_line(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def content_line(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, Any]:
    """The one content line of ``request_id``, as the JSON log formatter writes it."""
    found = records_of(caplog, CONTENT, request_id)
    assert len(found) == 1, found
    line: dict[str, Any] = json.loads(JsonFormatter().format(found[0]))
    [access] = records_of(caplog, ACCESS, request_id)
    access_line = JsonFormatter().format(access)
    for message in line["messages"]:
        if isinstance(message.get("content"), str):
            assert message["content"] not in access_line
    for choice in line["completion"] or ():
        if choice["content"]:
            assert choice["content"] not in access_line
    return line


def without_nulls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the client sent them (the log shows unset optional fields as null)."""
    return [{name: value for name, value in m.items() if value is not None} for m in messages]


def sse_data(text: str) -> list[dict[str, Any]]:
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data:")]
    return [json.loads(event) for event in events if event != "[DONE]"]


def test_without_the_flag_no_content_is_logged(
    gateway: RunningGateway, http: httpx.Client, logs: pytest.LogCaptureFixture
) -> None:
    logs.set_level(logging.DEBUG)  # every logger, every level
    text = prompt()
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    answer = http.post(CHAT, json=body)
    assert answer.status_code == 200
    streamed = http.post(CHAT, json={**body, "stream": True})
    assert streamed.status_code == 200
    for response in (answer, streamed):
        request_id = response.headers["x-request-id"]
        assert records_of(logs, CONTENT, request_id) == []
        assert len(records_of(logs, ACCESS, request_id)) == 1
    completion = answer.json()["choices"][0]["message"]["content"]
    lines = every_line(logs)
    assert text not in lines
    assert completion not in lines


def test_a_completion_is_logged_once_with_its_prompt(
    gateway: RunningGateway, logged: httpx.Client, logs: pytest.LogCaptureFixture
) -> None:
    text = prompt()
    messages = [
        {"role": "system", "content": "Отвечай кратко."},
        {"role": "user", "content": text},
    ]
    response = logged.post(CHAT, json={"model": MODEL, "messages": messages})
    assert response.status_code == 200
    body = response.json()
    line = content_line(logs, response.headers["x-request-id"])
    assert line["logger"] == CONTENT
    assert line["api"] == "chat"
    assert (line["model"], line["status"], line["stream"]) == (MODEL, 200, False)
    assert line["generation_id"] == body["id"]
    assert line["key_id"].startswith("key_")
    assert without_nulls(line["messages"]) == messages
    [choice] = line["completion"]
    assert choice["content"] == body["choices"][0]["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert choice["tool_calls"] is None


def test_a_stream_is_logged_once_as_assembled_text(
    gateway: RunningGateway, logged: httpx.Client, logs: pytest.LogCaptureFixture
) -> None:
    text = prompt()
    request = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": True}
    response = logged.post(CHAT, json=request)
    assert response.status_code == 200
    chunks = sse_data(response.text)
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    line = content_line(logs, response.headers["x-request-id"])
    assert line["stream"] is True
    assert without_nulls(line["messages"]) == request["messages"]
    [choice] = line["completion"]
    assert choice["content"] == streamed
    assert choice["finish_reason"] == "stop"


def test_a_streamed_tool_call_is_logged_whole(
    gateway: RunningGateway, logged: httpx.Client, logs: pytest.LogCaptureFixture
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    question = [{"role": "user", "content": "Какая погода в Казани?"}]
    request = {"model": MODEL, "messages": question, "tools": [tool], "stream": True}
    response = logged.post(CHAT, json=request)
    assert response.status_code == 200
    calls = [
        call
        for chunk in sse_data(response.text)
        if chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls") or ()
    ]
    line = content_line(logs, response.headers["x-request-id"])
    [choice] = line["completion"]
    [call] = choice["tool_calls"]
    assert call["id"] == calls[0]["id"]
    assert call["name"] == "get_weather"
    assert call["arguments"] == "".join(c["function"].get("arguments", "") for c in calls)
    assert json.loads(call["arguments"])["city"]
    assert choice["finish_reason"] == "tool_calls"


def answer_text(api: str, stream: bool, response: httpx.Response) -> str:
    """The answer's text as the client of ``api`` reads it."""
    if stream:
        parts = []
        for event in sse_data(response.text):
            if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
                parts.append(event["delta"]["text"])
            elif event["type"] == "response.output_text.delta":
                parts.append(event["delta"])
        return "".join(parts)
    body = response.json()
    if api == "messages":
        return "".join(block["text"] for block in body["content"] if block["type"] == "text")
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("path", "api", "body"),
    [
        ("/v1/messages", "messages", {"model": "yandex/yandexgpt", "max_tokens": 50}),
        ("/v1/responses", "responses", {"model": "yandex/yandexgpt"}),
    ],
)
def test_other_chat_apis_log_their_content(
    gateway: RunningGateway,
    logged: httpx.Client,
    logs: pytest.LogCaptureFixture,
    path: str,
    api: str,
    body: dict[str, object],
    stream: bool,
) -> None:
    text = prompt()
    question: dict[str, object] = (
        {"input": text} if api == "responses" else {"messages": [{"role": "user", "content": text}]}
    )
    response = logged.post(path, json={**body, **question, "stream": stream})
    assert response.status_code == 200, response.text
    line = content_line(logs, response.headers["x-request-id"])
    assert (line["api"], line["stream"], line["status"]) == (api, stream, 200)
    assert text in json.dumps(line["messages"], ensure_ascii=False)
    [choice] = line["completion"]
    assert choice["content"]
    assert choice["content"] == answer_text(api, stream, response)


def test_a_failed_request_logs_its_prompt_without_a_completion(
    gateway: RunningGateway,
    logged: httpx.Client,
    emulators: dict[str, RunningEmulator],
    logs: pytest.LogCaptureFixture,
) -> None:
    faults = emulators["gigachat"].app[FAULTS_KEY]
    faults.status, faults.remaining = 400, 1
    text = prompt()
    try:
        refused = logged.post(
            CHAT, json={"model": MODEL, "messages": [{"role": "user", "content": text}]}
        )
    finally:
        faults.clear()
    assert refused.status_code >= 400
    line = content_line(logs, refused.headers["x-request-id"])
    assert line["status"] == refused.status_code
    assert line["messages"][0]["content"] == text
    assert line["completion"] is None
