from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from xrouter.keys.format import generate_key
from xrouter.keys.hashing import KeyHasher, load_pepper
from xrouter.settings import ConfigurationError, Settings, load_settings

PEPPER = b"0123456789abcdef0123456789abcdef"


def test_digest_is_hex_hmac_sha256_of_the_key() -> None:
    key = generate_key()
    expected = hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest()
    hasher = KeyHasher(PEPPER)
    assert hasher.digest(key) == expected
    assert hasher.digest(key) == expected  # the keyed state is reused, not consumed


def test_matches() -> None:
    hasher = KeyHasher(PEPPER)
    key = generate_key()
    assert hasher.matches(key, hasher.digest(key))
    assert not hasher.matches(generate_key(), hasher.digest(key))
    assert not KeyHasher(b"another pepper, 32 bytes long!!!").matches(key, hasher.digest(key))


def test_pepper_never_shows_in_repr() -> None:
    assert "0123" not in repr(KeyHasher(PEPPER))


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        KeyHasher(b"short")


def test_pepper_from_settings(tmp_path: Path) -> None:
    file = tmp_path / "pepper"
    settings = Settings(key_pepper="a-pepper-of-enough-length", key_pepper_file=file)
    assert load_pepper(settings) == b"a-pepper-of-enough-length"
    assert not file.exists()


def test_short_pepper_setting_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XROUTER_KEY_PEPPER", "short")
    with pytest.raises(ConfigurationError, match="XROUTER_KEY_PEPPER: must be at least 16"):
        load_settings()


def test_pepper_file_is_created_once_with_owner_only_access(tmp_path: Path) -> None:
    file = tmp_path / "secrets" / "xrouter.pepper"
    settings = Settings(key_pepper=None, key_pepper_file=file)
    first = load_pepper(settings)
    assert len(first) == 64
    bytes.fromhex(first.decode())
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert load_pepper(settings) == first
    assert [path.name for path in file.parent.iterdir()] == ["xrouter.pepper"]


def test_existing_pepper_file_is_used(tmp_path: Path) -> None:
    file = tmp_path / "pepper"
    file.write_text("an-operator-chosen-pepper\n")
    file.chmod(0o600)
    assert (
        load_pepper(Settings(key_pepper=None, key_pepper_file=file)) == b"an-operator-chosen-pepper"
    )


def test_empty_pepper_file_is_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "pepper"
    file.write_text("\n")
    with pytest.raises(ConfigurationError, match="XROUTER_KEY_PEPPER_FILE"):
        load_pepper(Settings(key_pepper=None, key_pepper_file=file))
