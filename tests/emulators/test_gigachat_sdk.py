"""Fidelity: the official ``gigachat`` SDK (classic v1 root methods) against the emulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from gigachat import GigaChat
from gigachat.exceptions import ResponseError
from gigachat.models import (
    Chat,
    Function,
    FunctionParameters,
    Messages,
    MessagesRole,
)
from gigachat.models.function_parameters_property import FunctionParametersProperty

from xrouter.emulators.gigachat import FAULTS_KEY, STATS_KEY
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import (
    GIGACHAT_API_PATH,
    GIGACHAT_EMULATOR_CREDENTIALS,
    GIGACHAT_OAUTH_PATH,
    RunningEmulator,
    start_emulator,
)

Start = Callable[..., Awaitable[RunningEmulator]]


def _client(url: str) -> GigaChat:
    return GigaChat(
        base_url=f"{url}{GIGACHAT_API_PATH}",
        auth_url=f"{url}{GIGACHAT_OAUTH_PATH}",
        credentials=GIGACHAT_EMULATOR_CREDENTIALS,
        scope="GIGACHAT_API_PERS",
        verify_ssl_certs=False,
        model="GigaChat",
    )


async def test_async_sdk_round_trip(start: Start) -> None:
    emulator = await start("gigachat", stream_chunks=3)
    client = _client(emulator.url)
    try:
        completion = await client.achat("Привет, GigaChat!")
        text = completion.choices[0].message.content
        assert "Привет, GigaChat!" in text
        assert completion.model.startswith("GigaChat:")
        streamed = [chunk async for chunk in client.astream("Привет, GigaChat!")]
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed) == text
        assert streamed[-1].choices[0].finish_reason == "stop"
        models = await client.aget_models()
        assert any(model.id_ == "GigaChat-2-Max" for model in models.data)
        embeddings = await client.aembeddings(["один", "два"])
        assert [len(item.embedding) for item in embeddings.data] == [1024, 1024]
        counts = await client.atokens_count(["Сколько здесь токенов?"], model="GigaChat")
        assert counts[0].tokens == 6  # "Сколько" and "токенов" are two pieces each
        balance = await client.aget_balance()
        assert balance.balance[0].usage == "GigaChat"
    finally:
        await client.aclose()
    assert emulator.app[STATS_KEY].token_requests == 1


async def test_async_sdk_function_call(start: Start) -> None:
    emulator = await start("gigachat")
    client = _client(emulator.url)
    function = Function(
        name="get_weather",
        description="Погода",
        parameters=FunctionParameters(
            type="object",
            properties={"city": FunctionParametersProperty(type="string")},
            required=["city"],
        ),
    )
    chat = Chat(
        messages=[Messages(role=MessagesRole.USER, content="Погода в Казани?")],
        functions=[function],
    )
    try:
        completion = await client.achat(chat)
    finally:
        await client.aclose()
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    call = choice.message.function_call
    assert call is not None
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Погода в Казани?"}
    assert choice.message.functions_state_id


async def test_sdk_recovers_from_an_expired_token(start: Start) -> None:
    emulator = await start("gigachat")
    faults = emulator.app[FAULTS_KEY]
    faults.token_ttl_seconds = 0.5  # only the first token is short-lived
    client = _client(emulator.url)
    try:
        await client.achat("раз")
        faults.token_ttl_seconds = None  # the refreshed one outlives a slow retry
        await asyncio.sleep(0.6)
        completion = await client.achat("два")
    finally:
        await client.aclose()
    assert "два" in completion.choices[0].message.content
    assert emulator.app[STATS_KEY].token_requests == 2


async def test_sdk_sees_injected_rate_limit(start: Start) -> None:
    emulator = await start("gigachat", error_rate=1.0, error_status=429)
    client = _client(emulator.url)
    try:
        with pytest.raises(ResponseError) as raised:
            await client.achat("Привет")
    finally:
        await client.aclose()
    assert raised.value.args[1] == 429


class _EmulatorThread:
    """An emulator on its own event loop in a thread, for the SDK's synchronous client."""

    def __init__(self, options: EmulatorOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.emulator = self._call(start_emulator("gigachat", options))

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        async def run() -> Any:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def stop(self) -> None:
        self._call(self.emulator.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def threaded_emulator() -> Iterator[RunningEmulator]:
    running = _EmulatorThread(EmulatorOptions(stream_chunks=2))
    yield running.emulator
    running.stop()


def test_sync_sdk_round_trip(threaded_emulator: RunningEmulator) -> None:
    with _client(threaded_emulator.url) as client:
        text = client.chat("Здравствуй").choices[0].message.content
        streamed = "".join(
            chunk.choices[0].delta.content or "" for chunk in client.stream("Здравствуй")
        )
        assert streamed == text
        assert client.get_models().data
        assert client.get_model("GigaChat-2").id_ == "GigaChat-2"
        assert len(client.embeddings(["текст"], model="EmbeddingsGigaR").data[0].embedding) == 2560
        assert client.tokens_count(["один два"])[0].tokens == 2


async def test_async_sdk_function_round_trip_and_stream(start: Start) -> None:
    """The SDK's own function messages (object arguments, state id, JSON result) are accepted."""
    emulator = await start("gigachat")
    client = _client(emulator.url)
    function = Function(
        name="get_time",
        description="Текущее время",
        parameters=FunctionParameters(type="object", properties={}),
    )
    question = Messages(role=MessagesRole.USER, content="Который час?")
    try:
        first = await client.achat(Chat(messages=[question], functions=[function]))
        called = first.choices[0].message
        result = Messages(role=MessagesRole.FUNCTION, name="get_time", content='{"time": "12:00"}')
        follow_up = Chat(messages=[question, called, result], functions=[function])
        answer = await client.achat(follow_up)
        streamed = [
            chunk async for chunk in client.astream(Chat(messages=[question], functions=[function]))
        ]
    finally:
        await client.aclose()
    assert called.functions_state_id
    assert answer.choices[0].finish_reason == "stop"
    assert "12:00" in answer.choices[0].message.content
    [chunk] = streamed
    assert chunk.choices[0].finish_reason == "function_call"
    assert chunk.choices[0].delta.function_call is not None
    assert chunk.choices[0].delta.function_call.name == "get_time"
    assert chunk.choices[0].delta.functions_state_id == called.functions_state_id


async def test_async_sdk_user_password_and_access_token(start: Start) -> None:
    emulator = await start("gigachat")
    with_password = GigaChat(
        base_url=f"{emulator.url}{GIGACHAT_API_PATH}",
        user="xrouter",
        password="secret",
        verify_ssl_certs=False,
        model="GigaChat",
    )
    try:
        assert (await with_password.achat("Привет")).choices[0].message.content
        token = with_password.token
    finally:
        await with_password.aclose()
    assert emulator.app[STATS_KEY].password_token_requests == 1
    with_token = GigaChat(
        base_url=f"{emulator.url}{GIGACHAT_API_PATH}",
        access_token=token,
        verify_ssl_certs=False,
        model="GigaChat",
    )
    try:
        assert (await with_token.aget_models()).data
    finally:
        await with_token.aclose()
    assert emulator.app[STATS_KEY].token_requests == 1
