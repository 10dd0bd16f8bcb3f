"""The checks ``xrouter serve`` runs before it starts: routes against the enabled providers, and
the address it will listen on."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.log_secrets import register_secret
from xrouter.preflight import check_address, check_routes
from xrouter.settings import ConfigurationError, load_settings

YANDEX_KEY = "AQVN-preflight-test-key"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("XROUTER_"):
            monkeypatch.delenv(name)


def test_a_file_route_replaces_the_setting_route_of_the_same_name(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("smart: {targets: [gigachat/GigaChat-2]}\n")
    settings = load_settings(routes={"smart": {"targets": ["openai/gpt-4o"]}}, routes_file=routes)
    check_routes(settings)  # as at load: the setting's route is replaced, so it is not checked
    routes.write_text("smart: {targets: [openai/gpt-4o]}\n")
    with pytest.raises(ConfigurationError, match=r"^XROUTER_ROUTES_FILE: route 'smart': "):
        check_routes(settings)


def test_only_providers_with_credentials_are_enabled_without_emulators() -> None:
    register_secret(YANDEX_KEY)
    base: dict[str, Any] = {
        "emulate_missing_providers": False,
        "yandex_api_key": YANDEX_KEY,
        "yandex_folder_id": "b1gfolder",
    }
    check_routes(load_settings(routes={"ru": {"targets": ["yandex/yandexgpt"]}}, **base))
    settings = load_settings(
        routes={"ru": {"targets": ["yandex/yandexgpt", "gigachat/GigaChat-2"]}}, **base
    )
    with pytest.raises(ConfigurationError) as raised:
        check_routes(settings)
    assert str(raised.value) == (
        "XROUTER_ROUTES: route 'ru': provider 'gigachat' of 'gigachat/GigaChat-2' is not "
        "enabled (enabled: yandex)"
    )


def test_address_in_use_is_named_and_a_free_one_passes() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=rf"cannot listen on 127\.0\.0\.1:{port} "):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # released: the port is free again
