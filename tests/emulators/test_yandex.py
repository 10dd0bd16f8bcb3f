"""The YandexGPT emulator over real loopback HTTP: completion (JSON, NDJSON), auth, errors."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from xrouter.emulators.options import SUPPORTED_ERROR_STATUSES
from xrouter.emulators.server import RunningEmulator
from xrouter.emulators.yandex import ERRORS, MODEL_VERSIONS, STATS_KEY

Start = Callable[..., Awaitable[RunningEmulator]]
API_KEY = {"Authorization": "Api-Key AQVN-test-key"}
IAM_TOKEN = "t1.9euelZrNz5eVlZKJnZ." + "A" * 86
FOLDER = "b1gtestfolder"
WEATHER_TOOL = {
    "function": {
        "name": "get_weather",
        "description": "Погода",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
}


def _request(text: str = "Расскажи о Байкале, пожалуйста", **options: Any) -> dict[str, Any]:
    return {
        "modelUri": f"gpt://{FOLDER}/yandexgpt/latest",
        "completionOptions": {"temperature": 0.3, "maxTokens": "2000", **options},
        "messages": [{"role": "system", "text": "Отвечай кратко"}, {"role": "user", "text": text}],
    }


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/foundationModels/v1/completion",
) -> tuple[int, Any]:
    async with session.post(f"{url}{path}", json=body, headers=headers or API_KEY) as response:
        return response.status, await response.json()


async def _stream_lines(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> list[Any]:
    async with session.post(
        f"{url}/foundationModels/v1/completion", json=body, headers=API_KEY
    ) as response:
        assert response.status == 200
        raw = (await response.read()).decode()
    if body["completionOptions"].get("stream"):
        assert raw.endswith("\n")
    return [json.loads(line) for line in raw.splitlines()]


async def test_completion_shape_follows_the_proto3_json_mapping(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex")
    status, body = await _post(session, emulator.url, _request())
    assert status == 200
    result = body["result"]
    alternative = result["alternatives"][0]
    assert alternative["status"] == "ALTERNATIVE_STATUS_FINAL"
    assert alternative["message"]["role"] == "assistant"
    assert "Расскажи о Байкале, пожалуйста" in alternative["message"]["text"]
    usage = result["usage"]
    assert all(isinstance(value, str) for key, value in usage.items() if key.endswith("Tokens"))
    assert int(usage["totalTokens"]) == int(usage["inputTextTokens"]) + int(
        usage["completionTokens"]
    )
    assert usage["completionTokensDetails"] == {"reasoningTokens": "0"}
    assert result["modelVersion"] == "23.10.2025"
    assert emulator.app[STATS_KEY].completion_requests == 1


async def test_stream_is_cumulative_ndjson_ending_with_the_full_text(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex", stream_chunks=4)
    _, plain = await _post(session, emulator.url, _request())
    expected = plain["result"]["alternatives"][0]["message"]["text"]
    lines = await _stream_lines(session, emulator.url, _request(stream=True))
    assert len(lines) == 4
    texts = [line["result"]["alternatives"][0]["message"]["text"] for line in lines]
    statuses = [line["result"]["alternatives"][0]["status"] for line in lines]
    assert statuses == ["ALTERNATIVE_STATUS_PARTIAL"] * 3 + ["ALTERNATIVE_STATUS_FINAL"]
    assert all(
        later.startswith(earlier) and later != earlier
        for earlier, later in itertools.pairwise(texts)
    )
    assert texts[-1] == expected
    assert "Байкале" in texts[-1]
    for line in lines:
        usage = line["result"]["usage"]
        assert isinstance(usage["inputTextTokens"], str)
        assert isinstance(usage["completionTokens"], str)
        assert line["result"]["modelVersion"] == "23.10.2025"
    completions = [int(line["result"]["usage"]["completionTokens"]) for line in lines]
    assert completions == sorted(completions)


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_gives_truncated_final(
    start: Start, session: aiohttp.ClientSession, stream: bool
) -> None:
    emulator = await start("yandex")
    body = _request(maxTokens="2", stream=stream)
    lines = await _stream_lines(session, emulator.url, body)
    final = lines[-1]["result"]
    assert final["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
    assert final["usage"]["completionTokens"] == "2"


async def test_every_model_and_branch_has_a_distinct_version(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex")
    seen = {}
    for model, branch in MODEL_VERSIONS:
        body = _request() | {"modelUri": f"gpt://{FOLDER}/{model}/{branch}"}
        status, response = await _post(session, emulator.url, body)
        assert status == 200
        seen[model, branch] = response["result"]["modelVersion"]
    assert len(set(seen.values())) == len(seen) == len(MODEL_VERSIONS)
    for model in {model for model, _ in MODEL_VERSIONS}:
        body = _request() | {"modelUri": f"gpt://{FOLDER}/{model}"}
        _, response = await _post(session, emulator.url, body)
        assert response["result"]["modelVersion"] == seen[model, "latest"]


@pytest.mark.parametrize(
    "model_uri",
    [
        "gpt://f/yandexgpt-ultra/latest",
        "gpt://f/yandexgpt/nightly",
        "yandexgpt",
        "gpt://f",
        "emb://f/yandexgpt/latest",
    ],
)
async def test_bad_model_uri_is_invalid_argument(
    start: Start, session: aiohttp.ClientSession, model_uri: str
) -> None:
    emulator = await start("yandex")
    status, body = await _post(session, emulator.url, _request() | {"modelUri": model_uri})
    assert status == 400
    assert body == {
        "error": {
            "grpcCode": 3,
            "httpCode": 400,
            "message": "invalid model_uri",
            "httpStatus": "Bad Request",
            "details": [],
        }
    }


async def test_folder_header_must_match_the_uri(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex")
    status, body = await _post(
        session, emulator.url, _request(), API_KEY | {"x-folder-id": "b1gother"}
    )
    assert (status, body["error"]["grpcCode"], body["error"]["httpCode"]) == (403, 7, 403)
    status, _ = await _post(session, emulator.url, _request(), API_KEY | {"x-folder-id": FOLDER})
    assert status == 200


async def test_configured_folder_and_key_are_enforced(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex", api_key="secret-key", folder_id="b1gmine")
    body = _request() | {"modelUri": "gpt://b1gmine/yandexgpt-lite/rc"}
    status, _ = await _post(session, emulator.url, body, {"Authorization": "Api-Key secret-key"})
    assert status == 200
    status, error = await _post(
        session, emulator.url, _request(), {"Authorization": "Api-Key secret-key"}
    )
    assert (status, error["error"]["grpcCode"]) == (403, 7)
    status, error = await _post(session, emulator.url, body, {"Authorization": "Api-Key wrong-key"})
    assert (status, error["error"]["grpcCode"]) == (401, 16)
    assert error["error"]["message"].startswith("Unknown api key")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Api-Key "}, 401),
        ({"Authorization": "Bearer not-an-iam-token"}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": f"Bearer {IAM_TOKEN}"}, 200),
    ],
)
async def test_authentication(
    start: Start, session: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    emulator = await start("yandex")
    async with session.post(
        f"{emulator.url}/foundationModels/v1/completion", json=_request(), headers=headers
    ) as response:
        assert response.status == status
        body = await response.json()
    if status == 401:
        error = body["error"]
        assert (error["grpcCode"], error["httpCode"], error["httpStatus"]) == (
            16,
            401,
            "Unauthorized",
        )
        assert error["details"] == []


async def test_tool_call_then_text_after_the_result(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex")
    body = _request("Какая погода в Сочи?") | {"tools": [WEATHER_TOOL]}
    _, response = await _post(session, emulator.url, body)
    alternative = response["result"]["alternatives"][0]
    assert alternative["status"] == "ALTERNATIVE_STATUS_TOOL_CALLS"
    call = alternative["message"]["toolCallList"]["toolCalls"][0]["functionCall"]
    assert call == {"name": "get_weather", "arguments": {"city": "Какая погода в Сочи?"}}
    assert "text" not in alternative["message"]

    body["messages"] += [
        alternative["message"],
        {
            "role": "user",
            "toolResultList": {
                "toolResults": [{"functionResult": {"name": "get_weather", "content": '{"t": 20}'}}]
            },
        },
    ]
    _, response = await _post(session, emulator.url, body)
    alternative = response["result"]["alternatives"][0]
    assert alternative["status"] == "ALTERNATIVE_STATUS_FINAL"
    assert "get_weather" in alternative["message"]["text"]


async def test_streamed_tool_call_is_one_line(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    body = _request("Погода?", stream=True) | {"tools": [WEATHER_TOOL]}
    lines = await _stream_lines(session, emulator.url, body)
    assert len(lines) == 1
    assert lines[0]["result"]["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_TOOL_CALLS"


@pytest.mark.parametrize(
    "body",
    [
        _request(temperature=1.5),
        _request(temperature=-0.1),
        _request(maxTokens="many"),
        _request() | {"messages": []},
        _request() | {"messages": [{"role": "robot", "text": "hi"}]},
        _request() | {"messages": [{"role": "user", "text": "a", "toolResultList": {}}]},
    ],
)
async def test_invalid_requests_are_400(
    start: Start, session: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    emulator = await start("yandex")
    status, response = await _post(session, emulator.url, body)
    assert status == 400
    assert response["error"]["grpcCode"] == 3


async def test_malformed_json_is_400(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    url = f"{emulator.url}/foundationModels/v1/completion"
    async with session.post(url, data=b"{oops", headers=API_KEY) as response:
        assert response.status == 400
        assert (await response.json())["error"]["grpcCode"] == 3


@pytest.mark.parametrize("status", sorted(SUPPORTED_ERROR_STATUSES))
async def test_injected_errors_have_the_grpc_code(
    start: Start, session: aiohttp.ClientSession, status: int
) -> None:
    emulator = await start("yandex", error_rate=1.0, error_status=status)
    url = f"{emulator.url}/foundationModels/v1/completion"
    async with session.post(url, json=_request(stream=True), headers=API_KEY) as response:
        assert response.status == status
        body = await response.json()
        assert (response.headers.get("Retry-After") is not None) == (status == 429)
    grpc_code, http_status, message = ERRORS[status]
    assert body == {
        "error": {
            "grpcCode": grpc_code,
            "httpCode": status,
            "message": message,
            "httpStatus": http_status,
            "details": [],
        }
    }


async def test_text_embedding(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    path = "/foundationModels/v1/textEmbedding"
    vectors = {}
    for kind in ("text-search-doc", "text-search-query"):
        body = {"modelUri": f"emb://{FOLDER}/{kind}/latest", "text": "Озеро Байкал"}
        status, response = await _post(session, emulator.url, body, path=path)
        assert status == 200
        assert response["numTokens"] == "2"
        assert isinstance(response["modelVersion"], str)
        vectors[kind] = response["embedding"]
    assert all(len(vector) == 256 for vector in vectors.values())
    assert math.isclose(math.fsum(v * v for v in vectors["text-search-doc"]), 1.0, rel_tol=1e-9)
    assert vectors["text-search-doc"] != vectors["text-search-query"]
    bad = {"modelUri": f"emb://{FOLDER}/text-search-x/latest", "text": "a"}
    status, response = await _post(session, emulator.url, bad, path=path)
    assert (status, response["error"]["message"]) == (400, "invalid model_uri")


async def test_tokenize(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex", stream_chunks=1)
    body = {"modelUri": f"gpt://{FOLDER}/yandexgpt/rc", "text": "Привет, мир"}
    status, response = await _post(
        session, emulator.url, body, path="/foundationModels/v1/tokenize"
    )
    assert status == 200
    assert [token["text"] for token in response["tokens"]] == ["▁Привет", ",", "▁мир"]
    assert all(
        isinstance(token["id"], str) and token["special"] is False for token in response["tokens"]
    )
    assert response["modelVersion"] == "27.11.2025"


async def test_client_request_id_is_echoed(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    headers = API_KEY | {"x-client-request-id": "abc-123"}
    url = f"{emulator.url}/foundationModels/v1/completion"
    async with session.post(url, json=_request(), headers=headers) as response:
        assert response.headers["x-client-request-id"] == "abc-123"
