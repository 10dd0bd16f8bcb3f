"""HKDF-SHA-256 (RFC 5869) on the standard library's HMAC, so deriving a key from the pepper
does not load a cryptography library into every worker."""

from __future__ import annotations

import hashlib
import hmac

_HASH_LENGTH = hashlib.sha256().digest_size


def hkdf_sha256(key_material: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """``length`` bytes of output keying material (RFC 5869 §2.2 extract, §2.3 expand)."""
    if not 0 < length <= 255 * _HASH_LENGTH:
        raise ValueError("HKDF-SHA-256 derives 1 to 8160 bytes")
    # An absent salt is a string of HashLen zeros (§2.2).
    pseudorandom_key = hmac.digest(salt or bytes(_HASH_LENGTH), key_material, "sha256")
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(pseudorandom_key, block + info + bytes([counter]), "sha256")
        output += block
        counter += 1
    return output[:length]
