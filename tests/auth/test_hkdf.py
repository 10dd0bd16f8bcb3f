from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from xrouter.auth.hkdf import hkdf_sha256


def test_rfc_5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_rfc_5869_test_case_3_without_salt_or_info() -> None:
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), b"", 42)
    assert okm == bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@pytest.mark.parametrize("info", [b"xrouter ui csrf", b"xrouter oauth signing keys"])
def test_keys_derived_before_stay_the_same(info: bytes) -> None:
    # CSRF tokens and the sealed signing keys in a database must still open.
    pepper = b"auth-test-pepper-0123456789abcdef"
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(pepper)
    assert hkdf_sha256(pepper, info) == derived


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_lengths_outside_the_rfc_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="8160"):
        hkdf_sha256(b"key", b"info", length)
