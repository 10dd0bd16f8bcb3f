"""GigaChat streams through the gateway: each chunk is forwarded as it arrives, and a stream
that stops mid-way ends with an error event, not a hang."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.gigachat import FAULTS_KEY, GigaChatFaults
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator
from xrouter.storage.migrate import upgrade

MODEL = "gigachat/GigaChat-2-Max"
READ_TIMEOUT_SECONDS = 3.0
QUESTION: Any = [{"role": "user", "content": "Расскажи про Москву и Санкт-Петербург"}]


@pytest.fixture(scope="module")
def gigachat(loop: BackgroundLoop) -> Iterator[RunningEmulator]:
    emulator = loop.run(start_emulator("gigachat", EmulatorOptions(stream_chunks=4)))
    yield emulator
    loop.run(emulator.close())


@pytest.fixture(scope="module")
def sdk(
    loop: BackgroundLoop,
    gigachat: RunningEmulator,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[openai.OpenAI]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gigachat-streaming") / "x.db",
        gigachat.url,
        emulators["yandex"].url,
        upstream_read_timeout_seconds=READ_TIMEOUT_SECONDS,
    )
    upgrade(settings.database_url)
    gateway = RunningGateway(settings, loop)
    key = gateway.create_key("streaming").key
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        yield client
    gateway.stop()


@pytest.fixture
def faults(gigachat: RunningEmulator) -> Iterator[GigaChatFaults]:
    faults = gigachat.app[FAULTS_KEY]
    yield faults
    faults.clear()


def test_chunks_are_forwarded_while_the_upstream_is_still_answering(
    sdk: openai.OpenAI, loop: BackgroundLoop, faults: GigaChatFaults
) -> None:
    whole = sdk.chat.completions.create(model=MODEL, messages=QUESTION)
    expected = whole.choices[0].message.content or ""
    faults.mode = "hold"  # GigaChat sends its first event, then nothing until released
    stream = sdk.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    content = next(chunks).choices[0].delta.content or ""
    assert content
    assert expected.startswith(content)
    # The client has the first words while GigaChat has not finished: nothing was buffered.
    assert faults.holding
    loop.loop.call_soon_threadsafe(faults.release)
    rest = list(chunks)
    text = content + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == expected
    assert [
        c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert rest[-1].usage is not None
    assert rest[-1].usage.total_tokens == whole.usage.total_tokens  # type: ignore[union-attr]


def test_a_stream_that_stops_ends_with_a_timeout_event(
    sdk: openai.OpenAI, faults: GigaChatFaults
) -> None:
    faults.mode, faults.stall_seconds = "hold", READ_TIMEOUT_SECONDS + 0.5
    response = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, stream=True
    )
    assert response.http_response.status_code == 200
    body = response.http_response.read().decode()
    events = [event.removeprefix("data: ") for event in body.split("\n\n") if event]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert (error["code"], error["type"]) == ("upstream_timeout", "upstream_error")
    assert json.loads(events[1])["choices"][0]["delta"]["content"]
