"""The cryptography of access tokens: RS256 signatures (joserfc) and the AES-256-GCM sealing of
private keys at rest (cryptography).

The two libraries cost a worker about 12 MiB, so this module is imported only once OAuth is in
use, in a worker thread (see ``signing_keys``); a worker serving API keys never loads it.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from xrouter.auth.signing_keys import ALGORITHM

RSA_KEY_BITS = 2048
_NONCE_BYTES = 12


class KeyEncryption:
    """AES-256-GCM under ``key``, with the key id as associated data: a sealed key cannot be
    swapped for another row's."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, kid: str, plaintext: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, kid.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, kid: str, stored: str) -> bytes:
        """The plaintext; ``ValueError`` if it was sealed under another key or altered."""
        raw = base64.b64decode(stored)
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise ValueError("the sealed key does not open with this key") from None


def generate_key(kid: str, encryption: KeyEncryption) -> tuple[str, str]:
    """A new RSA key pair named ``kid``: its public JWK (JSON) and its sealed private JWK."""
    key = RSAKey.generate_key(
        RSA_KEY_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}, private=True
    )
    private = json.dumps(key.as_dict(private=True)).encode()
    return json.dumps(key.as_dict(private=False)), encryption.encrypt(kid, private)


def open_key(kid: str, sealed: str, encryption: KeyEncryption) -> RSAKey:
    """The private key stored sealed; ``ValueError`` if it cannot be opened or read."""
    return RSAKey.import_key(json.loads(encryption.decrypt(kid, sealed)))


def sign(protected: dict[str, Any], payload: bytes, key: RSAKey) -> str:
    """The compact JWS of ``payload`` under ``protected``, signed RS256."""
    return jws.serialize_compact(protected, payload, key, algorithms=[ALGORITHM])


def verified_payload(token: str, key: RSAKey) -> bytes:
    """The payload of ``token`` if its RS256 signature is ``key``'s; ``ValueError`` if not."""
    try:
        return jws.deserialize_compact(token, key, algorithms=[ALGORITHM]).payload or b""
    except (JoseError, ValueError, TypeError) as error:
        raise ValueError("the signature is invalid") from error
