"""The YandexGPT emulator's REST face beyond plain completion: deferred completions and
operations, tokenizeCompletion, structured output, reasoning, the content filter, echo
replies, and the IAM token endpoint with PS256 JWTs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from tests.fixtures.yandex.keys import authorized_key

from xrouter.emulators.server import RunningEmulator
from xrouter.emulators.yandex import CONTENT_FILTER_MARKER, CORE_KEY, STATS_KEY
from xrouter.emulators.yandex_generation import CONTENT_FILTER_TEXT, ECHO_MARKER
from xrouter.emulators.yandex_iam import IAM_AUDIENCE, load_authorized_key
from xrouter.providers.yandex_auth import AuthorizedKey

Start = Callable[..., Awaitable[RunningEmulator]]
API_KEY = {"Authorization": "Api-Key AQVN-test-key"}
FOLDER = "b1gtestfolder"
COMPLETION_RESPONSE = "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.CompletionResponse"


def _request(text: str = "Расскажи о Байкале", **fields: Any) -> dict[str, Any]:
    options = fields.pop("completionOptions", {})
    return {
        "modelUri": f"gpt://{FOLDER}/yandexgpt/rc",
        "completionOptions": {"stream": False, **options},
        "messages": [{"role": "user", "text": text}],
        **fields,
    }


async def _call(
    session: aiohttp.ClientSession,
    url: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    method = "GET" if body is None else "POST"
    async with session.request(
        method, f"{url}{path}", json=body, headers=headers or API_KEY
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_deferred_completion_is_polled_until_done(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex", stream_delay_ms=10)
    status, operation = await _call(
        session, emulator.url, "/foundationModels/v1/completionAsync", _request()
    )
    assert status == 200
    assert operation["done"] is False
    assert operation["description"] == "Async GPT Completion"
    assert {"id", "createdAt", "createdBy", "modifiedAt"} <= operation.keys()
    assert "response" not in operation
    path = f"/operations/{operation['id']}"
    deadline = time.monotonic() + 5
    while not operation["done"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
        status, operation = await _call(session, emulator.url, path)
        assert status == 200
    response = operation["response"]
    # The operation's response is an Any, without the ``result`` wrapper of the sync API.
    assert response["@type"] == COMPLETION_RESPONSE
    assert response["modelVersion"] == "27.11.2025"
    assert response["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_FINAL"
    _, sync = await _call(session, emulator.url, "/foundationModels/v1/completion", _request())
    assert response["alternatives"] == sync["result"]["alternatives"]
    status, missing = await _call(session, emulator.url, "/operations/d7qnosuchoperation")
    assert (status, missing["error"]["grpcCode"]) == (404, 5)


async def test_operation_can_be_cancelled(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex", stream_delay_ms=1000)
    _, operation = await _call(
        session, emulator.url, "/foundationModels/v1/completionAsync", _request()
    )
    status, cancelled = await _call(
        session, emulator.url, f"/operations/{operation['id']}:cancel", {}
    )
    assert status == 200
    assert cancelled["done"] is True
    assert cancelled["error"]["code"] == 1


async def test_tokenize_completion(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    body = _request("Привет, мир")
    status, response = await _call(
        session, emulator.url, "/foundationModels/v1/tokenizeCompletion", body
    )
    assert status == 200
    assert [token["text"] for token in response["tokens"]] == ["▁Привет", ",", "▁мир"]
    assert response["modelVersion"] == "27.11.2025"


async def test_json_schema_and_json_object(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
    }
    body = _request("Погода в Казани", jsonSchema={"schema": schema})
    _, response = await _call(session, emulator.url, "/foundationModels/v1/completion", body)
    answer = json.loads(response["result"]["alternatives"][0]["message"]["text"])
    assert answer == {"city": "Погода в Казани", "days": 3}
    body = _request("Погода в Казани", jsonObject=True)
    _, response = await _call(session, emulator.url, "/foundationModels/v1/completion", body)
    assert "answer" in json.loads(response["result"]["alternatives"][0]["message"]["text"])


async def test_reasoning_tokens_are_counted(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    hidden = {"completionOptions": {"reasoningOptions": {"mode": "ENABLED_HIDDEN"}}}
    _, plain = await _call(session, emulator.url, "/foundationModels/v1/completion", _request())
    _, thinking = await _call(
        session, emulator.url, "/foundationModels/v1/completion", _request(**hidden)
    )
    reasoning = int(thinking["result"]["usage"]["completionTokensDetails"]["reasoningTokens"])
    assert reasoning > 0
    assert plain["result"]["usage"]["completionTokensDetails"]["reasoningTokens"] == "0"
    assert int(thinking["result"]["usage"]["completionTokens"]) == (
        int(plain["result"]["usage"]["completionTokens"]) + reasoning
    )


async def test_content_filter_replaces_the_streamed_text(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex", stream_chunks=4)
    body = _request(f"Расскажи {CONTENT_FILTER_MARKER}", completionOptions={"stream": True})
    async with session.post(
        f"{emulator.url}/foundationModels/v1/completion", json=body, headers=API_KEY
    ) as response:
        lines = [json.loads(line) for line in (await response.read()).splitlines()]
    alternatives = [line["result"]["alternatives"][0] for line in lines]
    assert {a["status"] for a in alternatives[:-1]} == {"ALTERNATIVE_STATUS_PARTIAL"}
    assert alternatives[-1]["status"] == "ALTERNATIVE_STATUS_CONTENT_FILTER"
    assert alternatives[-1]["message"]["text"] == CONTENT_FILTER_TEXT
    assert not CONTENT_FILTER_TEXT.startswith(alternatives[-2]["message"]["text"])


async def test_echo_reply_and_parallel_tool_calls(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex")
    text = "Съешь же ещё этих мягких французских булок"
    _, response = await _call(
        session, emulator.url, "/foundationModels/v1/completion", _request(ECHO_MARKER + text)
    )
    assert response["result"]["alternatives"][0]["message"]["text"] == text
    tools = [
        {"function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
        for name in ("first", "second")
    ]
    body = _request("Вызови обе", tools=tools, parallelToolCalls=True)
    _, response = await _call(session, emulator.url, "/foundationModels/v1/completion", body)
    calls = response["result"]["alternatives"][0]["message"]["toolCallList"]["toolCalls"]
    assert [call["functionCall"]["name"] for call in calls] == ["first", "second"]
    body = _request("Не вызывай", tools=tools, toolChoice={"mode": "NONE"})
    _, response = await _call(session, emulator.url, "/foundationModels/v1/completion", body)
    assert response["result"]["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_FINAL"


async def test_unknown_fields_are_refused(start: Start, session: aiohttp.ClientSession) -> None:
    emulator = await start("yandex")
    body = _request() | {"completionOptions": {"maxTokenz": "5"}}
    status, response = await _call(session, emulator.url, "/foundationModels/v1/completion", body)
    assert (status, response["error"]["grpcCode"]) == (400, 3)


# IAM tokens


def _signed(key: dict[str, Any], **claims: Any) -> str:
    signer = AuthorizedKey.from_json(key)
    now = int(time.time())
    payload = {"iss": key["service_account_id"], "aud": IAM_AUDIENCE, "iat": now, "exp": now + 600}
    header = {"typ": "JWT", "alg": "PS256", "kid": key["id"]}
    return jwt.encode(header, payload | claims, signer.private_key(), algorithms=["PS256"])


async def test_iam_token_for_a_valid_jwt_opens_the_api(
    start: Start, session: aiohttp.ClientSession
) -> None:
    emulator = await start("yandex", api_key="only-this-key", token_ttl_seconds=0.3)
    key = authorized_key()
    emulator.app[CORE_KEY].iam.register(load_authorized_key(key))
    status, token = await _call(session, emulator.url, "/iam/v1/tokens", {"jwt": _signed(key)}, {})
    assert status == 200
    assert token["iamToken"].startswith("t1.")
    assert token["expiresAt"].endswith("Z")
    bearer = {"Authorization": f"Bearer {token['iamToken']}"}
    status, _ = await _call(
        session, emulator.url, "/foundationModels/v1/completion", _request(), bearer
    )
    assert status == 200
    await asyncio.sleep(0.35)
    status, body = await _call(
        session, emulator.url, "/foundationModels/v1/completion", _request(), bearer
    )
    assert (status, body["error"]["message"]) == (401, "The token has expired")
    assert emulator.app[STATS_KEY].iam_token_requests == 1


@pytest.mark.parametrize(
    "problem", ["unknown key", "other signer", "wrong audience", "wrong issuer", "expired", "long"]
)
async def test_iam_refuses_bad_jwts(
    start: Start, session: aiohttp.ClientSession, problem: str
) -> None:
    emulator = await start("yandex")
    key = authorized_key()
    emulator.app[CORE_KEY].iam.register(load_authorized_key(key))
    now = int(time.time())
    if problem == "unknown key":
        token = _signed(authorized_key())
    elif problem == "other signer":
        other = authorized_key() | {"id": key["id"]}
        token = _signed(other, iss=key["service_account_id"])
    elif problem == "wrong audience":
        token = _signed(key, aud="https://example.com/tokens")
    elif problem == "wrong issuer":
        token = _signed(key, iss="ajesomeoneelse")
    elif problem == "expired":
        token = _signed(key, iat=now - 7200, exp=now - 3600)
    else:
        token = _signed(key, exp=now + 7200)
    status, body = await _call(session, emulator.url, "/iam/v1/tokens", {"jwt": token}, {})
    assert status == 401
    assert body["code"] == 16
    assert body["message"]


async def test_iam_key_files_are_loaded_at_start(tmp_path: Path) -> None:
    from xrouter.emulators.server import start_emulator

    key = authorized_key()
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    emulator = await start_emulator("yandex", service_account_keys=[path])
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{emulator.url}/iam/v1/tokens", json={"jwt": _signed(key)}) as response,
        ):
            assert response.status == 200
    finally:
        await emulator.close()
    public = RSAKey.import_key(key["public_key"])
    assert load_authorized_key(key).public_key.as_pem() == public.as_pem()
