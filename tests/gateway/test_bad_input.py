"""The bad-input campaign: garbage in gets a precise 4xx (or, where the input is merely odd,
a normal answer), never a 5xx, and the gateway stays healthy afterwards."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.server import RunningEmulator
from xrouter.gateway.middleware import MAX_HEADER_BYTES
from xrouter.storage.migrate import upgrade

CHAT = "/v1/chat/completions"
MODEL = "gigachat/GigaChat-2-Max"
USER = [{"role": "user", "content": "Привет"}]
JSON = {"content-type": "application/json"}


@pytest.fixture(autouse=True)
def still_healthy(http: httpx.Client) -> Iterator[None]:
    yield
    assert http.get("/health").status_code == 200
    answer = http.post(CHAT, json={"model": MODEL, "messages": USER})
    assert answer.status_code == 200, answer.text


def error_code(response: httpx.Response) -> str | None:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    code: str | None = error["code"]
    return code


def chat_body(**extra: Any) -> bytes:
    return json.dumps({"model": MODEL, "messages": USER, **extra}).encode()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # Invalid UTF-8 inside a string, and as the whole body.
        (
            b'{"model":"gigachat/GigaChat-2-Max","messages":[{"role":"user","content":"\xff\xfe"}]}',
            "invalid_json",
        ),
        (b"\xc3\x28\xa0\xa1", "invalid_json"),
        # NaN is not JSON.
        (chat_body()[:-1] + b', "temperature": NaN}', "invalid_json"),
        # Nesting far beyond any real request: at the top (not an object: refused at once),
        # and in a field nobody reads.
        (b"[" * 100_000 + b"]" * 100_000, "invalid_value"),
        (
            chat_body()[:-1] + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "invalid_json",
        ),
        (
            chat_body()[:-1] + b', "extra": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
            "invalid_json",
        ),
    ],
    ids=["utf8-in-string", "utf8-body", "nan", "nested", "nested-unknown", "nested-objects"],
)
def test_unparseable_bodies_are_400(http: httpx.Client, raw: bytes, code: str) -> None:
    response = http.post(CHAT, content=raw, headers=JSON)
    assert response.status_code == 400, response.text
    assert error_code(response) == code


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 1e308}, "temperature"),
        ({"n": 10**9}, "n"),
        ({"top_p": -1e-300}, "top_p"),
        ({"presence_penalty": 1e300}, "presence_penalty"),
        ({"max_tokens": -(2**63)}, "max_tokens"),
    ],
)
def test_absurd_numbers_are_400(http: httpx.Client, extra: dict[str, Any], param: str) -> None:
    response = http.post(CHAT, content=chat_body(**extra), headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_a_number_beyond_double_range_is_400(http: httpx.Client) -> None:
    response = http.post(CHAT, content=chat_body()[:-1] + b', "temperature": 1e999}', headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"


def test_unknown_fields_are_ignored_as_openai_does(http: httpx.Client) -> None:
    response = http.post(CHAT, content=chat_body(frobnicate={"x": [1, 2]}), headers=JSON)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]


def test_a_10_mb_body_is_413_with_or_without_its_length(http: httpx.Client) -> None:
    body = chat_body(messages=[{"role": "user", "content": "a" * 10_000_000}])
    declared = http.post(CHAT, content=body, headers=JSON)
    assert declared.status_code == 413
    assert error_code(declared) == "request_too_large"
    chunked = http.post(
        CHAT, content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    assert chunked.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [
        {"x-padding": "a" * (MAX_HEADER_BYTES + 1)},
        {f"x-h{i}": "v" * 16 for i in range(MAX_HEADER_BYTES // 16)},
    ],
    ids=["one-huge-header", "thousands-of-headers"],
)
def test_huge_headers_are_431(http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.post(CHAT, content=chat_body(), headers={**JSON, **headers})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert response.headers["x-request-id"]


def test_thousands_of_messages_are_served(http: httpx.Client) -> None:
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": f"m{i}"} for i in range(5001)]
    response = http.post(CHAT, json={"model": MODEL, "messages": messages})
    assert response.status_code == 200
    assert "m5000" in response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/xml", ""],
)
def test_wrong_content_types_are_415(http: httpx.Client, content_type: str) -> None:
    response = http.post(CHAT, content=chat_body(), headers={"content-type": content_type})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


@pytest.fixture(scope="module")
def impatient(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """A gateway that waits one second for a request body."""
    database: Path = tmp_path_factory.mktemp("impatient") / "xrouter.db"
    settings = gateway_settings(
        database,
        emulators["gigachat"].url,
        emulators["yandex"].url,
        request_body_timeout_seconds=1.0,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running
    running.stop()


def test_a_slowloris_body_is_cut_off_with_408(impatient: RunningGateway) -> None:
    key = impatient.create_key("slow").key
    body = chat_body()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.setblocking(False)
        answer = b""
        # One byte every 0.1 s: the body would take seconds; the gateway must not wait for it.
        for byte in body:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if b"\r\n\r\n" in answer or time.monotonic() - started > 8:
                break
            time.sleep(0.1)
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < 5
    assert b'"code":"request_timeout"' in answer
    with httpx.Client(base_url=impatient.url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert http.post(CHAT, content=body, headers=JSON).status_code == 200
