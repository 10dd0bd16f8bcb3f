"""Route configuration: validation with clear messages, key-scoped aliases, and reloading
(from the routes file, by SIGHUP)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from xrouter.routing.reload import LiveRoutes
from xrouter.routing.routes import RouteConfig, RoutesError, compile_routes, read_routes_file
from xrouter.settings import ConfigurationError, load_settings

PROVIDERS = ("gigachat", "yandex")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_routes_file_with_short_and_full_targets(tmp_path: Path) -> None:
    path = write(
        tmp_path / "routes.yaml",
        """
routes:
  smart:
    strategy: weighted
    targets:
      - {model: gigachat/GigaChat-2-Max, weight: 3, params: {temperature: 0.2}}
      - yandex/yandexgpt
""",
    )
    routes = read_routes_file(path)
    smart = routes["smart"]
    assert [t.model for t in smart.targets] == ["gigachat/GigaChat-2-Max", "yandex/yandexgpt"]
    assert smart.targets[0].params == {"temperature": 0.2}
    table = compile_routes(routes, PROVIDERS)
    route = table.find("smart", "key_x", None)
    assert route is not None
    assert route.targets[1].public_id == "yandex/yandexgpt"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "smart: {targets: [gpt-4o]}",
            "route 'smart': targets.0.model: 'gpt-4o' is not a model id",
        ),
        ("smart: {targets: []}", "route 'smart': targets: List should have at least 1 item"),
        (
            "smart: {targets: [{model: yandex/yandexgpt, params: {messages: []}}]}",
            "'messages' cannot be overridden",
        ),
        (
            "smart: {targets: [{model: yandex/yandexgpt, params: {temperature: 9}}]}",
            "Expected `float` <= 2.0",
        ),
        ("smart: {strategy: random, targets: [yandex/yandexgpt]}", "strategy"),
        ("smart: {targets: [yandex/yandexgpt], tagrets: []}", "tagrets"),
        ("[1, 2]", "expected a mapping of route names"),
        ("smart: {targets: [\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(RoutesError) as caught:
        read_routes_file(write(tmp_path / "routes.yaml", body))
    assert message in str(caught.value)


def test_compiling_checks_providers_and_duplicate_aliases() -> None:
    configs = {"a": RouteConfig.model_validate({"targets": ["openai/gpt-4o"]})}
    with pytest.raises(RoutesError, match="provider 'openai' of 'openai/gpt-4o' is not enabled"):
        compile_routes(configs, PROVIDERS)
    configs = {
        "a": RouteConfig.model_validate({"alias": "x", "targets": ["yandex/yandexgpt"]}),
        "b": RouteConfig.model_validate({"alias": "x", "targets": ["yandex/yandexgpt-lite"]}),
    }
    with pytest.raises(RoutesError, match="both answer to 'x'"):
        compile_routes(configs, PROVIDERS)


def test_key_scoped_routes_win_for_their_keys() -> None:
    configs = {
        "everyone": RouteConfig.model_validate(
            {"alias": "yandex/yandexgpt", "targets": ["yandex/yandexgpt:latest"]}
        ),
        "staging": RouteConfig.model_validate(
            {"alias": "yandex/yandexgpt", "keys": ["key_s"], "targets": ["yandex/yandexgpt:rc"]}
        ),
    }
    table = compile_routes(configs, PROVIDERS)
    assert table.find("yandex/yandexgpt", "key_s", None).name == "staging"  # type: ignore[union-attr]
    assert table.find("yandex/yandexgpt", "key_o", None).name == "everyone"  # type: ignore[union-attr]
    assert table.find("gigachat/GigaChat-2", "key_s", None) is None


def test_routes_in_the_settings_and_a_bad_routes_setting(tmp_path: Path) -> None:
    config = write(
        tmp_path / "xrouter.yaml",
        "routes:\n  ru-fast:\n    targets: [gigachat/GigaChat-2, yandex/yandexgpt-lite]\n",
    )
    settings = load_settings(config)
    assert [t.model for t in settings.routes["ru-fast"].targets] == [
        "gigachat/GigaChat-2",
        "yandex/yandexgpt-lite",
    ]
    write(config, "routes:\n  ru-fast:\n    targets: nope\n")
    with pytest.raises(ConfigurationError, match="XROUTER_ROUTES"):
        load_settings(config)
    os.environ.pop("XROUTER_CONFIG", None)


async def test_reload_swaps_the_table_and_a_bad_file_keeps_it(tmp_path: Path) -> None:
    path = write(tmp_path / "routes.yaml", "a: {targets: [yandex/yandexgpt]}\n")
    configured = {"base": RouteConfig.model_validate({"targets": ["gigachat/GigaChat-2"]})}
    live = LiveRoutes(configured, path, PROVIDERS)
    assert live.load().routes == 2
    first = live.current()
    write(path, "a: {targets: [yandex/yandexgpt-lite]}\nb: {targets: [yandex/yandexgpt]}\n")
    assert (await live.reload()).routes == 3
    assert live.current() is not first
    route = live.current().find("a", "k", None)
    assert route is not None
    assert route.targets[0].model == "yandexgpt-lite"
    write(path, "a: {targets: [nowhere]}\n")
    before = live.current()
    with pytest.raises(RoutesError):
        await live.reload()
    assert live.current() is before


async def test_sighup_reloads(tmp_path: Path) -> None:
    path = write(tmp_path / "routes.yaml", "a: {targets: [yandex/yandexgpt]}\n")
    live = LiveRoutes({}, path, PROVIDERS)
    live.load()
    assert live.install_sighup()  # pytest runs this loop in the main thread
    try:
        write(path, "a: {targets: [yandex/yandexgpt]}\nb: {targets: [yandex/yandexgpt-lite]}\n")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(500):
            if live.current().find("b", "k", None) is not None:
                break
            await asyncio.sleep(0.01)
        assert live.current().find("b", "k", None) is not None
    finally:
        live.remove_sighup()
