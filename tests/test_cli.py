"""The ``xrouter`` command as a newcomer runs it: real processes, a fresh working directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import openai
import pytest

XROUTER = [sys.executable, "-m", "xrouter"]


def clean_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XROUTER_")}
    return {**environment, **extra}


def xrouter(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XROUTER, *args],
        cwd=cwd,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_invalid_configuration_fails_with_one_line(tmp_path: Path) -> None:
    result = xrouter(tmp_path, "serve", XROUTER_PORT="eighty")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "XROUTER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = xrouter(tmp_path, "keys", "create", "--name", "ci", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert set(key) == {"id", "key", "name"}
    assert key["key"].startswith("sk-xr-v1-")
    assert key["name"] == "ci"
    assert (tmp_path / "xrouter.db").exists()  # the embedded database was migrated

    listed = xrouter(tmp_path, "keys", "list")
    assert listed.returncode == 0
    assert key["id"] in listed.stdout
    assert key["key"] not in listed.stdout  # the secret is shown once, at creation

    revoked = xrouter(tmp_path, "keys", "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    missing = xrouter(tmp_path, "keys", "revoke", "key_doesnotexist0000")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr


class Served(NamedTuple):
    url: str
    cwd: Path
    process: subprocess.Popen[str]


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """``xrouter serve`` in a fresh directory with no credentials: the ``make run`` default."""
    drain = str(getattr(request, "param", 0))
    port = free_port()
    process = subprocess.Popen(
        [*XROUTER, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_environment(XROUTER_SHUTDOWN_DRAIN_SECONDS=drain),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"serve did not become ready:\n{output}")
        time.sleep(0.1)
    yield Served(url, tmp_path, process)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output


def test_serve_with_embedded_defaults_and_emulators(served: Served) -> None:
    url, cwd, _ = served
    created = xrouter(cwd, "keys", "create", "--name", "newcomer", "--json")
    key = json.loads(created.stdout)["key"]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    deadline = time.monotonic() + 10
    while True:  # the running server picks the new key up within a refresh period
        try:
            models = list(client.models.list())
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert models
    assert all(model.emulated for model in models)  # type: ignore[attr-defined]
    reply = client.chat.completions.create(
        model="gigachat/GigaChat-2-Max", messages=[{"role": "user", "content": "Привет"}]
    )
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(
        model="yandex/yandexgpt:rc", messages=[{"role": "user", "content": "Привет"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.close()


@pytest.mark.parametrize("served", [1.5], indirect=True)
def test_sigterm_drains_before_stopping(served: Served) -> None:
    url, _, process = served
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert httpx.get(f"{url}/health").status_code == 200  # still serving while draining
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1)
        except httpx.TransportError:
            break
        assert time.monotonic() - started < 20, "the server did not stop after draining"
        time.sleep(0.1)
    assert time.monotonic() - started >= 1.4
