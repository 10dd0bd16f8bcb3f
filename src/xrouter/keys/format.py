"""The API key format: ``sk-xr-v1-`` + 43 random base62 characters + 6 checksum characters.

43 base62 characters carry 256 bits from ``secrets``. The checksum (CRC32 of the random body,
in base62) lets the gateway refuse a mistyped or invented key without computing a digest, and
lets secret scanners recognise a leaked XRouter key with few false positives.
"""

from __future__ import annotations

import secrets
import string
import zlib

KEY_PREFIX = "sk-xr-v1-"
BODY_LENGTH = 43
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(KEY_PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
BASE62_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SHOWN_CHARACTERS = 4


def _checksum(body: str) -> str:
    # Six base62 digits, most significant first (62**6 > 2**32, so six always suffice). Written
    # out rather than looped: every authenticated request computes it.
    value, sixth = divmod(zlib.crc32(body.encode("ascii")), 62)
    value, fifth = divmod(value, 62)
    value, fourth = divmod(value, 62)
    value, third = divmod(value, 62)
    first, second = divmod(value, 62)
    digits = BASE62_ALPHABET
    return (
        digits[first]
        + digits[second]
        + digits[third]
        + digits[fourth]
        + digits[fifth]
        + digits[sixth]
    )


def generate_key() -> str:
    """A new random API key. Show it to its owner once; store only its digest."""
    body = "".join(secrets.choice(BASE62_ALPHABET) for _ in range(BODY_LENGTH))
    return KEY_PREFIX + body + _checksum(body)


def is_well_formed(key: str) -> bool:
    """Whether ``key`` has the right prefix, length, characters and checksum (no I/O)."""
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return False
    rest = key[len(KEY_PREFIX) :]
    # isalnum() alone accepts non-ASCII letters and digits; isascii() rules those out.
    if not (rest.isascii() and rest.isalnum()):
        return False
    body, checksum = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    return _checksum(body) == checksum


def display_prefix(key: str) -> str:
    """A form safe to show and store: ``sk-xr-v1-AbCd…wxyz`` (8 of the 43 random characters)."""
    body = key[len(KEY_PREFIX) : len(KEY_PREFIX) + BODY_LENGTH]
    return f"{KEY_PREFIX}{body[:_SHOWN_CHARACTERS]}…{body[-_SHOWN_CHARACTERS:]}"
