"""The official ``yandex-cloud-ml-sdk``, unmodified, against the YandexGPT emulator.

``sdk.models`` speaks gRPC (pointed at the gRPC face through ``service_map``), ``sdk.chat``
speaks the OpenAI-compatible REST API (the ``http_completions`` service). Both faces share
one core with the REST face, so the answers must agree with it exactly.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.emulators.yandex import STATS_KEY

with warnings.catch_warnings():
    # The package announces its rename to yandex-ai-studio-sdk; 0.19.1 is the one pinned here.
    warnings.simplefilter("ignore", UserWarning)
    from yandex_cloud_ml_sdk import AsyncYCloudML
    from yandex_cloud_ml_sdk.exceptions import AioRpcError

FOLDER = "b1gsdkfolder"
API_KEY = "AQVNsdk-test-key"
QUESTION = "Расскажи о Байкале и Телецком озере"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator("yandex", EmulatorOptions(stream_chunks=5), grpc_port=0)
    yield running
    await running.close()


@pytest.fixture
def sdk(emulator: RunningEmulator) -> AsyncYCloudML:
    grpc_address = f"127.0.0.1:{emulator.grpc_port}"
    return AsyncYCloudML(
        folder_id=FOLDER,
        auth=API_KEY,
        endpoint=None,
        verify=False,
        service_map={
            "ai-foundation-models": grpc_address,
            "operation": grpc_address,
            "http_completions": f"{emulator.url}/v1/",
        },
    )


async def _rest_completion(emulator: RunningEmulator, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{emulator.url}/foundationModels/v1/completion",
            json=body,
            headers={"Authorization": f"Api-Key {API_KEY}"},
        ) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = (await response.json())["result"]
        return result


async def test_run_matches_the_rest_face(sdk: AsyncYCloudML, emulator: RunningEmulator) -> None:
    model = sdk.models.completions("yandexgpt", model_version="rc").configure(
        temperature=0.3, max_tokens=500
    )
    result = await model.run(QUESTION)
    rest = await _rest_completion(
        emulator,
        {
            "modelUri": f"gpt://{FOLDER}/yandexgpt/rc",
            "completionOptions": {"temperature": 0.3, "maxTokens": "500"},
            "messages": [{"role": "user", "text": QUESTION}],
        },
    )
    assert result.alternatives[0].text == rest["alternatives"][0]["message"]["text"]
    assert result.alternatives[0].status.name == "FINAL"
    assert result.model_version == rest["modelVersion"] == "27.11.2025"
    assert result.usage.input_text_tokens == int(rest["usage"]["inputTextTokens"])
    assert result.usage.completion_tokens == int(rest["usage"]["completionTokens"])
    assert result.usage.total_tokens == int(rest["usage"]["totalTokens"])


async def test_run_stream_yields_growing_prefixes(sdk: AsyncYCloudML) -> None:
    model = sdk.models.completions("yandexgpt-lite")
    whole = await model.run(QUESTION)
    parts = [part async for part in model.run_stream(QUESTION)]
    texts = [part.alternatives[0].text for part in parts]
    assert len(parts) == 5
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert texts[-1] == whole.alternatives[0].text
    assert [part.alternatives[0].status.name for part in parts] == ["PARTIAL"] * 4 + ["FINAL"]
    assert {part.model_version for part in parts} == {"22.05.2025"}


async def test_versions_are_distinct(sdk: AsyncYCloudML) -> None:
    versions = {
        branch: (
            await sdk.models.completions("yandexgpt", model_version=branch).run("Привет")
        ).model_version
        for branch in ("latest", "rc", "deprecated")
    }
    assert len(set(versions.values())) == 3


async def test_tokenize(sdk: AsyncYCloudML) -> None:
    tokens = await sdk.models.completions("yandexgpt").tokenize("Привет, мир")
    assert [token.text for token in tokens] == ["▁Привет", ",", "▁мир"]
    assert all(isinstance(token.id, int) and not token.special for token in tokens)


async def test_embeddings_doc_and_query(sdk: AsyncYCloudML) -> None:
    doc = await sdk.models.text_embeddings("doc").run("Озеро Байкал")
    query = await sdk.models.text_embeddings("query").run("Озеро Байкал")
    assert len(doc.embedding) == len(query.embedding) == 256
    assert doc.embedding != query.embedding
    assert doc.num_tokens == 2
    assert (doc.model_version, query.model_version) == ("13.03.2025", "14.03.2025")


async def test_deferred_run(sdk: AsyncYCloudML, emulator: RunningEmulator) -> None:
    model = sdk.models.completions("yandexgpt", model_version="deprecated")
    operation = await model.run_deferred(QUESTION)
    result = await operation.wait(poll_interval=0.01)
    direct = await model.run(QUESTION)
    assert result.alternatives[0].text == direct.alternatives[0].text
    assert result.model_version == "09.02.2025"
    assert (await operation.get_status()).is_succeeded


async def test_tool_call_round_trip(sdk: AsyncYCloudML) -> None:
    weather = sdk.tools.function(
        {"type": "object", "properties": {"city": {"type": "string"}}},
        name="get_weather",
        description="Погода в городе",
    )
    model = sdk.models.completions("yandexgpt").configure(tools=[weather])
    result = await model.run("Какая погода в Сочи?")
    assert result.alternatives[0].status.name == "TOOL_CALLS"
    [call] = result.tool_calls
    assert call.function is not None
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Какая погода в Сочи?"}
    answer = await model.run(
        [
            {"role": "user", "text": "Какая погода в Сочи?"},
            result,
            {"tool_results": [{"name": "get_weather", "content": '{"t": 21}'}]},
        ]
    )
    assert answer.alternatives[0].status.name == "FINAL"
    assert "get_weather" in answer.alternatives[0].text


async def test_grpc_errors(sdk: AsyncYCloudML, emulator: RunningEmulator) -> None:
    with pytest.raises(AioRpcError) as caught:
        await sdk.models.completions("yandexgpt", model_version="nightly").run("Привет")
    assert caught.value.code().name == "INVALID_ARGUMENT"
    assert "invalid model_uri" in (caught.value.details() or "")
    strict = await start_emulator("yandex", EmulatorOptions(api_key=API_KEY), grpc_port=0)
    try:
        intruder = AsyncYCloudML(
            folder_id=FOLDER,
            auth="AQVNsomeone-elses-key",
            endpoint=None,
            verify=False,
            service_map={"ai-foundation-models": f"127.0.0.1:{strict.grpc_port}"},
        )
        with pytest.raises(AioRpcError) as caught:
            await intruder.models.completions("yandexgpt").run("Привет")
        assert caught.value.code().name == "UNAUTHENTICATED"
        assert "Unknown api key" in (caught.value.details() or "")
    finally:
        await strict.close()
    assert emulator.app[STATS_KEY].completion_requests >= 1


async def test_chat_completions_face(sdk: AsyncYCloudML, emulator: RunningEmulator) -> None:
    model = sdk.chat.completions("yandexgpt", model_version="rc").configure(temperature=0.5)
    result = await model.run(QUESTION)
    direct = await sdk.models.completions("yandexgpt", model_version="rc").run(QUESTION)
    assert result.text == direct.alternatives[0].text
    assert result.finish_reason.value == "stop"
    assert result.usage is not None
    assert result.usage.completion_tokens == direct.usage.completion_tokens
    assert result.model == f"gpt://{FOLDER}/yandexgpt/rc"
    parts = [part async for part in model.run_stream(QUESTION)]
    assert "".join(part[0].delta for part in parts) == result.text
    assert parts[-1].text == result.text
    assert parts[-1].finish_reason.value == "stop"
    assert {part.finish_reason.value for part in parts[:-1]} == {"null"}


async def test_chat_completions_tools_and_json(sdk: AsyncYCloudML) -> None:
    weather = sdk.tools.function(
        {"type": "object", "properties": {"city": {"type": "string"}}}, name="get_weather"
    )
    model = sdk.chat.completions("yandexgpt").configure(tools=[weather])
    result = await model.run("Какая погода в Сочи?")
    assert result.finish_reason.value == "tool_calls"
    assert result.tool_calls is not None
    [call] = result.tool_calls
    assert call.function is not None
    assert call.function.name == "get_weather"
    assert call.id
    assert call.id.startswith("call_")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    structured = sdk.chat.completions("yandexgpt").configure(
        response_format={"name": "reply", "json_schema": schema}
    )
    assert set(json.loads((await structured.run("Привет")).text)) == {"answer"}
