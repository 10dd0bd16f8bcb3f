"""The YandexGPT emulator's OpenAI-compatible face with the ``openai`` SDK and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp
import openai
import pytest

from xrouter.emulators.server import RunningEmulator

Start = Callable[..., Awaitable[RunningEmulator]]
MODEL = "gpt://b1gfolder/yandexgpt/latest"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_openai_sdk_chat_stream_and_tools(start: Start) -> None:
    emulator = await start("yandex", api_key="AQVNkey")
    async with openai.AsyncOpenAI(
        base_url=f"{emulator.url}/v1", api_key="AQVNkey", max_retries=0
    ) as client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Привет, как дела?"}]
        )
        assert reply.choices[0].finish_reason == "stop"
        text = reply.choices[0].message.content
        assert text
        assert "Привет, как дела?" in text
        assert reply.usage is not None
        assert reply.usage.total_tokens > 0
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Привет, как дела?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage is not None
        calling = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Погода в Сочи?"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        [call] = calling.choices[0].message.tool_calls or []
        assert calling.choices[0].finish_reason == "tool_calls"
        assert json.loads(call.function.arguments) == {"city": "Погода в Сочи?"}  # type: ignore[union-attr]
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "Погода в Сочи?"},
                calling.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": '{"t": 21}'},
            ],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        assert "get_weather" in (answer.choices[0].message.content or "")
        with pytest.raises(openai.BadRequestError, match="invalid model_uri"):
            await client.chat.completions.create(
                model="gpt://b1gfolder/yandexgpt/nightly",
                messages=[{"role": "user", "content": "x"}],
            )


async def test_intermediate_chunks_have_no_finish_reason_key(start: Start) -> None:
    emulator = await start("yandex", stream_chunks=4)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Привет"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{emulator.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Api-Key k"},
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = (await response.text()).strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert len(chunks) == 4
    assert all("finish_reason" not in chunk["choices"][0] for chunk in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]


async def test_malformed_bodies_are_400(start: Start) -> None:
    emulator = await start("yandex")
    bodies = [
        {"model": MODEL, "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]},
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"function": 1},
        },
        {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]},
        {"model": MODEL, "messages": []},
        {"messages": [{"role": "user", "content": "x"}]},
    ]
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(
                f"{emulator.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": "Api-Key k"},
            ) as response:
                assert response.status == 400, body
                assert (await response.json())["error"]["type"] == "invalid_request_error"
