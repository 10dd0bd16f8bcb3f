from __future__ import annotations

import re

import pytest

from xrouter.keys.format import (
    BODY_LENGTH,
    KEY_LENGTH,
    KEY_PREFIX,
    display_prefix,
    generate_key,
    is_well_formed,
)


def test_generated_keys_have_the_documented_shape() -> None:
    key = generate_key()
    assert len(key) == KEY_LENGTH == 58
    assert re.fullmatch(r"sk-xr-v1-[0-9A-Za-z]{49}", key)
    assert is_well_formed(key)


def test_generated_keys_differ() -> None:
    assert len({generate_key() for _ in range(1000)}) == 1000


def test_every_single_character_change_is_refused() -> None:
    key = generate_key()
    start = len(KEY_PREFIX)
    for position in range(start, len(key)):
        replacement = "a" if key[position] != "a" else "b"
        tampered = key[:position] + replacement + key[position + 1 :]
        assert not is_well_formed(tampered), position


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "sk-xr-v1-",
        "sk-xr-v2-" + "A" * 49,
        "sk-xr-v1-" + "A" * 49,  # right shape, wrong checksum
        "sk-xr-v1-" + "A" * 48,
        "sk-proj-" + "A" * 50,
        "Bearer sk-xr-v1-" + "A" * 49,
    ],
)
def test_malformed_keys_are_refused(candidate: str) -> None:
    assert not is_well_formed(candidate)


def test_non_ascii_characters_are_refused() -> None:
    key = generate_key()
    # Arabic-Indic digit: alphanumeric to str.isalnum(), but not base62.
    tampered = key[:20] + "\u0661" + key[21:]
    assert not is_well_formed(tampered)


def test_display_prefix_shows_eight_characters_of_the_body() -> None:
    key = generate_key()
    body = key[len(KEY_PREFIX) : len(KEY_PREFIX) + BODY_LENGTH]
    shown = display_prefix(key)
    assert shown == f"sk-xr-v1-{body[:4]}…{body[-4:]}"
    assert len(shown) <= 32  # fits api_keys.prefix


@pytest.mark.parametrize(
    ("body", "checksum"),
    [
        ("0" * 43, "2CZclj"),
        ("z" * 43, "0UsatS"),  # a checksum with a leading zero digit
        ("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg", "2vUM9x"),
    ],
)
def test_the_checksum_of_a_known_body_never_changes(body: str, checksum: str) -> None:
    # Keys already handed out must stay well formed whatever the implementation.
    assert is_well_formed(KEY_PREFIX + body + checksum)
    assert not is_well_formed(KEY_PREFIX + body + checksum[::-1])
