"""Yandex's cumulative stream becomes exact OpenAI deltas, end to end: the emulator echoes
generated text (long, Cyrillic, emoji, combining marks) cut into many frames at arbitrary
code points, and the deltas the ``openai`` SDK receives must join into exactly that text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import start_emulator
from xrouter.emulators.yandex_generation import ECHO_MARKER
from xrouter.storage.migrate import upgrade

CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(CYRILLIC + " ,.—«»!?\n\t"),
        st.sampled_from("😀🇷🇺é\u0301\u200d"),
        st.characters(codec="utf-8"),
    ),
    min_size=1,
    max_size=2000,
)


@pytest.fixture(scope="module")
def streaming_client(
    loop: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    gigachat = loop.run(start_emulator("gigachat"))
    yandex = loop.run(start_emulator("yandex", EmulatorOptions(stream_chunks=48)))
    database: Path = tmp_path_factory.mktemp("yandex-streaming") / "x.db"
    config = gateway_settings(database, gigachat.url, yandex.url)
    upgrade(config.database_url)
    gateway = RunningGateway(config, loop)
    key = gateway.create_key("streaming").key
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        yield client
    gateway.stop()
    loop.run(yandex.close())
    loop.run(gigachat.close())


def _streamed(client: openai.OpenAI, text: str) -> tuple[str, list[str]]:
    stream = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=[{"role": "user", "content": ECHO_MARKER + text}],
        stream=True,
    )
    pieces = []
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    return "".join(pieces), reasons


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXT)
def test_deltas_join_into_the_exact_text(streaming_client: openai.OpenAI, text: str) -> None:
    joined, reasons = _streamed(streaming_client, text)
    assert joined == text
    assert reasons == ["stop"]


def test_long_cyrillic_stream_arrives_in_many_exact_deltas(streaming_client: openai.OpenAI) -> None:
    text = "Съешь же ещё этих мягких французских булок, да выпей чаю. 🍞 " * 2000
    stream = streaming_client.chat.completions.create(
        model="yandex/yandexgpt:rc",
        messages=[{"role": "user", "content": ECHO_MARKER + text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) == 48
    assert "".join(deltas) == text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 10_000
    whole = streaming_client.chat.completions.create(
        model="yandex/yandexgpt:rc", messages=[{"role": "user", "content": ECHO_MARKER + text}]
    )
    assert whole.choices[0].message.content == text
