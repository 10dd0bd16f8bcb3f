"""Bad input gets an OpenAI-shaped error naming the field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.servers import RunningGateway

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "Привет"}]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"]
    assert response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": "gigachat/GigaChat-2"}, "messages"),
        ({"model": "gigachat/GigaChat-2", "messages": []}, "messages"),
        ({"model": 42, "messages": USER}, "model"),
        ({"model": "gigachat/GigaChat-2", "messages": "hi"}, "messages"),
        ({"model": "gigachat/GigaChat-2", "messages": [{"content": "x"}]}, "messages[0].role"),
        (
            {"model": "gigachat/GigaChat-2", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "gigachat/GigaChat-2", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "temperature": 3}, "temperature"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "top_p": 1.5}, "top_p"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "max_tokens": -5}, "max_tokens"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "stream": "yes"}, "stream"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "n": 0}, "n"),
        ({"model": "gigachat/GigaChat-2", "messages": USER, "stop": "END"}, "stop"),
        ({"model": "yandex/yandexgpt", "messages": USER, "stop": ["END"]}, "stop"),
    ],
)
def test_invalid_chat_request_names_the_field(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = http.post(CHAT, json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe{}", b"[1, 2]", b"null"])
def test_body_that_is_not_a_json_object(http: httpx.Client, raw: bytes) -> None:
    response = http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_wrong_content_type_is_415(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b"model=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_body_over_the_limit_is_413(http: httpx.Client, gateway: RunningGateway) -> None:
    limit = gateway.runtime.settings.max_request_bytes
    huge = {"model": "gigachat/GigaChat-2", "messages": [{"role": "user", "content": "я" * limit}]}
    response = http.post(CHAT, json=huge)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_body_over_the_limit_without_content_length_is_413(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    limit = gateway.runtime.settings.max_request_bytes

    def chunks() -> Any:
        yield b'{"model": "gigachat/GigaChat-2", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}]}'

    response = http.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic abc"}, "invalid_authorization"),
        ({"Authorization": "Bearer"}, "invalid_authorization"),
        ({"Authorization": "Bearer not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Bearer sk-xr-v1-" + "B" * 49}, "invalid_api_key"),
    ],
)
def test_authentication_failures_are_401(
    gateway: RunningGateway, headers: dict[str, str], code: str
) -> None:
    for method, path in (("POST", CHAT), ("GET", "/v1/models"), ("POST", "/v1/embeddings")):
        response = httpx.request(
            method, gateway.url + path, headers=headers, json={"model": "x", "messages": USER}
        )
        assert response.status_code == 401, (path, response.text)
        assert error_of(response)["code"] == code


def test_unknown_endpoint_and_wrong_method(http: httpx.Client) -> None:
    missing = http.post("/v1/completions", json={})
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "unknown_url"
    wrong = http.get(CHAT)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert error_of(wrong)["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(http: httpx.Client) -> None:
    mine = http.get("/v1/models", headers={"x-request-id": "trace-123"})
    assert mine.headers["x-request-id"] == "trace-123"
    generated = http.get("/v1/models", headers={"x-request-id": "bad id with spaces"})
    assert generated.headers["x-request-id"] not in ("", "bad id with spaces")
    assert http.get("/health").headers["x-request-id"]


def test_unsupported_parameters_are_refused_clearly(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "yandex/yandexgpt", "messages": USER, "n": 2})
    assert response.status_code == 400
    assert error_of(response)["param"] == "n"
    response = http.post(CHAT, json={"model": "yandex/yandexgpt", "messages": USER, "stop": "x"})
    assert error_of(response)["param"] == "stop"
    response = http.post(CHAT, json={"model": "gigachat/GigaChat-2:2.0", "messages": USER})
    assert response.status_code in (400, 404)
    assert error_of(response)["param"] == "model"
