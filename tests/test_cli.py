"""The ``xrouter`` command as a newcomer runs it: real processes, a fresh working directory."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import openai
import pytest

from tests.gateway_processes import XROUTER, GatewayProcess, clean_environment
from tests.log_secrets import keep_output, register_secret
from tests.serving_imports import imported_of


def xrouter(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*XROUTER, *args],
        cwd=cwd,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    keep_output(result.stderr)  # the logs; stdout is what the command prints on purpose
    return result


def test_invalid_configuration_fails_with_one_line(tmp_path: Path) -> None:
    result = xrouter(tmp_path, "serve", XROUTER_PORT="eighty")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "XROUTER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_routes_file_fails_with_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  smart: {strategy: fastest, targets: [yandex/yandexgpt]}\n")
    result = xrouter(tmp_path, "serve", XROUTER_ROUTES_FILE=str(routes))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "route 'smart': strategy" in result.stderr
    assert "serving on" not in result.stderr


def assert_one_line_before_banner(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr
    return result.stderr


def test_route_to_unknown_provider_in_routes_file_fails_with_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  smart: {targets: [gigachat/GigaChat-2, openai/gpt-4o]}\n")
    line = assert_one_line_before_banner(
        xrouter(tmp_path, "serve", XROUTER_ROUTES_FILE=str(routes))
    )
    assert "XROUTER_ROUTES_FILE: route 'smart': provider 'openai' of 'openai/gpt-4o'" in line


def test_route_to_disabled_provider_in_setting_fails_with_one_line(tmp_path: Path) -> None:
    routes = json.dumps({"ru": {"targets": ["yandex/yandexgpt"]}})
    result = xrouter(
        tmp_path, "serve", XROUTER_ROUTES=routes, XROUTER_EMULATE_MISSING_PROVIDERS="false"
    )
    line = assert_one_line_before_banner(result)
    assert "XROUTER_ROUTES: route 'ru': provider 'yandex' of 'yandex/yandexgpt'" in line


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({"targets": ["GigaChat-2"]}, "route 'smart': targets.0.model: 'GigaChat-2' is not"),
        ({"targets": ["yandex/yandexgpt"], "retry": 1}, "route 'smart': retry: unknown field"),
    ],
)
def test_invalid_routes_setting_names_the_route(
    tmp_path: Path, route: dict[str, object], problem: str
) -> None:
    result = xrouter(tmp_path, "serve", XROUTER_ROUTES=json.dumps({"smart": route}))
    assert f"XROUTER_ROUTES: {problem}" in assert_one_line_before_banner(result)


def test_port_in_use_fails_with_one_line_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = xrouter(tmp_path, "serve", XROUTER_PORT=str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in assert_one_line_before_banner(result)


def test_the_serving_process_never_imports_alembic() -> None:
    assert imported_of({"alembic", "mako"}) == []


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = xrouter(tmp_path, "keys", "create", "--name", "ci", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    register_secret(key["key"])
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
    gateway: GatewayProcess


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """``xrouter serve`` in a fresh directory with no credentials: the ``make run`` default."""
    drain = str(getattr(request, "param", 0))
    gateway = GatewayProcess(tmp_path, clean_environment(XROUTER_SHUTDOWN_DRAIN_SECONDS=drain))
    yield Served(gateway.url, tmp_path, gateway)
    output = gateway.terminate()
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert gateway.process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output


def test_serve_with_embedded_defaults_and_emulators(served: Served) -> None:
    url, cwd, _ = served
    created = xrouter(cwd, "keys", "create", "--name", "newcomer", "--json")
    key = json.loads(created.stdout)["key"]
    register_secret(key)
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
    url, _, gateway = served
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
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
