"""Locust scenarios: a realistic traffic mix against a running gateway.

``bench/run.py`` measures the gateway's limits with one fixed request; this file is for what a
deployment sees: short and long prompts (a long one carries a conversation history of a few
thousand tokens), half of the chat requests streamed, several API keys (each simulated user picks
one), and the odd model listing. Streams report their time to the first content event as a
separate ``TTFB`` entry.

Against ``make run`` (with no provider credentials set, the built-in emulators answer)::

    make run                                           # terminal 1: http://127.0.0.1:8080
    for n in 1 2 3; do .venv/bin/xrouter keys create --name load-$n --json; done
    .venv/bin/pip install -e '.[bench]'                # Locust
    XROUTER_BENCH_KEYS=xr-...,xr-...,xr-... .venv/bin/locust -f bench/locustfile.py \\
        --host http://127.0.0.1:8080 --headless --users 50 --spawn-rate 10 --run-time 2m

Drop ``--headless`` for Locust's web UI (http://127.0.0.1:8089). ``XROUTER_BENCH_MODEL``
picks the model or route (default ``gigachat/GigaChat-2-Max``). Rate limits apply as
configured: a key's 429s show as failures, which is what they are for the client.
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import HttpUser, between, task

KEYS = [key.strip() for key in os.environ.get("XROUTER_BENCH_KEYS", "").split(",") if key.strip()]
MODEL = os.environ.get("XROUTER_BENCH_MODEL", "gigachat/GigaChat-2-Max")
CHAT = "/v1/chat/completions"

SHORT_PROMPTS = [
    "Привет! Сколько будет дважды два?",
    "Translate to English: «Утро вечера мудренее».",
    "Назови три города на Волге.",
    "Write a haiku about autumn in Moscow.",
]
_PARAGRAPH = (
    "Компания рассматривает переход на облачную инфраструктуру. В отчёте описаны текущие "
    "серверы, нагрузка по часам, требования к отказоустойчивости и бюджет на три года. "
)


def long_conversation() -> list[dict[str, str]]:
    """A support-style conversation with a long document in it (a few thousand tokens)."""
    document = _PARAGRAPH * random.randint(20, 40)
    return [
        {"role": "system", "content": "Ты аналитик. Отвечай кратко и по делу."},
        {"role": "user", "content": f"Вот отчёт:\n{document}"},
        {"role": "assistant", "content": "Прочитал отчёт. Что именно вас интересует?"},
        {"role": "user", "content": "Перечисли главные риски перехода и оцени каждый."},
    ]


class ChatUser(HttpUser):
    """One client application: its own key, a think time between requests."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        if not KEYS:
            raise RuntimeError("set XROUTER_BENCH_KEYS to one or more comma-separated API keys")
        self.headers = {"Authorization": f"Bearer {random.choice(KEYS)}"}

    def _body(self, messages: list[dict[str, str]], stream: bool) -> dict[str, object]:
        body: dict[str, object] = {"model": MODEL, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _complete(self, name: str, messages: list[dict[str, str]]) -> None:
        with self.client.post(
            CHAT,
            json=self._body(messages, False),
            headers=self.headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif not response.json().get("choices"):
                response.failure("an answer without choices")

    def _stream(self, name: str, messages: list[dict[str, str]]) -> None:
        started = time.perf_counter()
        with self.client.post(
            CHAT,
            json=self._body(messages, True),
            headers=self.headers,
            name=name,
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            first_at: float | None = None
            done = False
            for line in response.iter_lines():
                if line == b"data: [DONE]":
                    done = True
                elif first_at is None and line.startswith(b"data: "):
                    chunk = json.loads(line[6:])
                    if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                        first_at = time.perf_counter()
            if not done:
                response.failure("the stream ended without [DONE]")
                return
        if first_at is not None:
            self.environment.events.request.fire(
                request_type="TTFB",
                name=name,
                response_time=(first_at - started) * 1000,
                response_length=0,
                exception=None,
                context={},
            )

    @task(4)
    def short_completion(self) -> None:
        self._complete("short", [{"role": "user", "content": random.choice(SHORT_PROMPTS)}])

    @task(4)
    def short_stream(self) -> None:
        self._stream("short stream", [{"role": "user", "content": random.choice(SHORT_PROMPTS)}])

    @task(1)
    def long_completion(self) -> None:
        self._complete("long", long_conversation())

    @task(1)
    def long_stream(self) -> None:
        self._stream("long stream", long_conversation())

    @task(1)
    def list_models(self) -> None:
        self.client.get("/v1/models", headers=self.headers, name="models")
