"""Starting emulators in-process, the ``xrouter emulate`` arguments and the foreground server."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from tests.gateway_processes import free_port

from xrouter.emulators import cli
from xrouter.emulators.server import (
    YANDEX_API_PATH,
    YANDEX_EMULATOR_API_KEY,
    YANDEX_EMULATOR_FOLDER_ID,
    create_app,
    start_emulator,
)


async def test_start_emulator_reports_url_and_port() -> None:
    emulator = await start_emulator("yandex")
    try:
        assert emulator.url == f"http://127.0.0.1:{emulator.port}"
        assert emulator.port > 0
        body = {
            "modelUri": f"gpt://{YANDEX_EMULATOR_FOLDER_ID}/yandexgpt-lite",
            "messages": [{"role": "user", "text": "Привет"}],
        }
        headers = {"Authorization": f"Api-Key {YANDEX_EMULATOR_API_KEY}"}
        url = f"{emulator.url}{YANDEX_API_PATH}/foundationModels/v1/completion"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            assert response.status == 200
    finally:
        await emulator.close()


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown emulator kind"):
        create_app("openai", None)  # type: ignore[arg-type]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_and_defaults() -> None:
    args = _parse("gigachat")
    assert (args.kind, args.host, args.port) == ("gigachat", "127.0.0.1", None)
    options = cli.options_from_args(
        _parse(
            "yandex",
            "--latency-ms",
            "5",
            "--stream-chunks",
            "2",
            "--error-rate",
            "0.1",
            "--error-status",
            "429",
            "--token-ttl-seconds",
            "2",
            "--seed",
            "3",
            "--stream-delay-ms",
            "1",
        )
    )
    assert (options.latency_ms, options.stream_chunks, options.stream_delay_ms) == (5, 2, 1)
    assert (options.error_rate, options.error_status, options.token_ttl_seconds, options.seed) == (
        0.1,
        429,
        2,
        3,
    )
    with pytest.raises(SystemExit):
        _parse("gigachat", "--error-status", "418")


def test_run_refuses_invalid_options() -> None:
    assert cli.run(_parse("gigachat", "--error-rate", "2")) == 2


def test_foreground_server_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    code = (
        "import argparse, sys; from xrouter.emulators import cli; p = argparse.ArgumentParser(); "
        "cli.add_arguments(p); sys.exit(cli.run(p.parse_args(sys.argv[1:])))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "gigachat", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "emulator did not start"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}/api/v1".encode() in output
