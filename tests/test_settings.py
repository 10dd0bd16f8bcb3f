"""Settings from the environment and a YAML file; bad values fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrouter.settings import ConfigurationError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("XROUTER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite+aiosqlite:///./xrouter.db"
    assert settings.is_embedded_database
    assert settings.redis_url is None
    assert not settings.gigachat_configured
    assert not settings.yandex_configured
    assert settings.gigachat_base_url == "https://gigachat.devices.sberbank.ru/api/v1"
    assert settings.gigachat_auth_url == "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
    assert settings.yandex_base_url == "https://llm.api.cloud.yandex.net"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XROUTER_PORT", "9001")
    monkeypatch.setenv("XROUTER_GIGACHAT_CREDENTIALS", "aWQ6c2VjcmV0")
    monkeypatch.setenv("XROUTER_YANDEX_API_KEY", "AQVNkey")
    monkeypatch.setenv("XROUTER_YANDEX_FOLDER_ID", "b1gfolder")
    monkeypatch.setenv("XROUTER_GIGACHAT_BASE_URL", "http://127.0.0.1:9/api/v1/")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.gigachat_configured
    assert settings.yandex_configured
    assert settings.gigachat_base_url == "http://127.0.0.1:9/api/v1"
    assert "aWQ6c2VjcmV0" not in repr(settings)  # secrets never appear in reprs or logs


def test_yaml_file_and_environment_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "xrouter.yaml"
    config.write_text("port: 9100\nhost: 127.0.0.2\nlog_level: debug\n")
    monkeypatch.setenv("XROUTER_PORT", "9200")
    settings = load_settings(config)
    assert settings.host == "127.0.0.2"
    assert settings.log_level == "debug"
    assert settings.port == 9200


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("XROUTER_PORT", "eighty", "XROUTER_PORT: "),
        ("XROUTER_PORT", "70000", "XROUTER_PORT: "),
        ("XROUTER_DATABASE_URL", "mysql://x", "XROUTER_DATABASE_URL: must start with"),
        ("XROUTER_REDIS_URL", "http://x", "XROUTER_REDIS_URL: must start with"),
        ("XROUTER_GIGACHAT_BASE_URL", "gigachat.example", "XROUTER_GIGACHAT_BASE_URL: "),
        ("XROUTER_GIGACHAT_SCOPE", "WRONG", "XROUTER_GIGACHAT_SCOPE: "),
        ("XROUTER_GIGACHAT_CA_BUNDLE", "/no/such.pem", "XROUTER_GIGACHAT_CA_BUNDLE: file"),
        ("XROUTER_YANDEX_API_KEY", "AQVNkey", "XROUTER_YANDEX_FOLDER_ID: required"),
        ("XROUTER_LOG_LEVEL", "loud", "XROUTER_LOG_LEVEL: "),
    ],
)
def test_invalid_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("prot: 80\n")
    with pytest.raises(ConfigurationError, match="XROUTER_PROT: unknown setting"):
        load_settings(config)


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("port: [unclosed\n")
    with pytest.raises(ConfigurationError, match="XROUTER_CONFIG"):
        load_settings(broken)
