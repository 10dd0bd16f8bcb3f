"""The Yandex IAM token endpoint of the emulator: ``POST /iam/v1/tokens``.

A service account's authorized key signs a PS256 JWT; the endpoint verifies it against the
registered public key and answers with a short-lived IAM token, as the real IAM service does.
The API faces then accept the token until it expires.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jwt import JWTClaimsRegistry

from xrouter.emulators.http import EmulatedApiError

IAM_TOKENS_PATH = "/iam/v1/tokens"
# The audience Yandex requires in the JWT, whatever address the token endpoint is reached at.
IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
MAX_JWT_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60
_MAX_ISSUED_TOKENS = 100_000


@dataclass(frozen=True, slots=True)
class ServiceAccountKey:
    """The public half of a service account's authorized key."""

    key_id: str
    service_account_id: str
    public_key: RSAKey


def load_authorized_key(data: dict[str, Any]) -> ServiceAccountKey:
    """A ``ServiceAccountKey`` from an authorized key JSON (``id``, ``service_account_id``,
    ``public_key`` or ``private_key``), as ``yc iam key create`` writes it."""
    pem = data.get("public_key") or data.get("private_key")
    if not isinstance(pem, str) or "-----BEGIN" not in pem:
        raise ValueError("the authorized key has neither public_key nor private_key")
    # Yandex prefixes the private key with a comment line; PEM starts at "-----BEGIN".
    key = RSAKey.import_key(pem[pem.index("-----BEGIN") :])
    public = RSAKey.import_key(key.as_pem(private=False))
    return ServiceAccountKey(str(data["id"]), str(data["service_account_id"]), public)


def load_authorized_key_file(path: Path) -> ServiceAccountKey:
    return load_authorized_key(json.loads(path.read_text(encoding="utf-8")))


class IamAuthority:
    """Registered service account keys and the IAM tokens issued for them."""

    def __init__(self, token_ttl_seconds: float) -> None:
        self.token_ttl_seconds = token_ttl_seconds
        self._keys: dict[str, ServiceAccountKey] = {}
        self._issued: dict[str, float] = {}

    def register(self, key: ServiceAccountKey) -> None:
        self._keys[key.key_id] = key

    def expired(self, token: str) -> bool:
        """Whether ``token`` was issued here and has expired (unknown tokens are not)."""
        expires_at = self._issued.get(token)
        return expires_at is not None and time.time() >= expires_at

    def exchange(self, body: dict[str, Any]) -> dict[str, str]:
        """Answer a token request: ``{"jwt": ...}`` or ``{"yandexPassportOauthToken": ...}``."""
        if isinstance(body.get("jwt"), str):
            self._verify(body["jwt"])
        elif not str(body.get("yandexPassportOauthToken", "")).startswith("y0_"):
            raise EmulatedApiError(400, "jwt or yandexPassportOauthToken is required")
        return self._issue()

    def _verify(self, token: str) -> None:
        key_id = _unverified_header(token).get("kid")
        key = self._keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise EmulatedApiError(401, f"Key {key_id} not found")
        try:
            decoded = jwt.decode(token, key.public_key, algorithms=["PS256"])
            registry = JWTClaimsRegistry(
                leeway=CLOCK_SKEW_SECONDS,
                iss={"essential": True, "value": key.service_account_id},
                aud={"essential": True, "value": IAM_AUDIENCE},
                exp={"essential": True},
                iat={"essential": True},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise EmulatedApiError(401, f"The JWT is invalid: {error}") from None
        claims = decoded.claims
        if claims["exp"] - claims["iat"] > MAX_JWT_LIFETIME_SECONDS:
            raise EmulatedApiError(401, "The JWT lifetime must not exceed one hour")

    def _issue(self) -> dict[str, str]:
        if len(self._issued) >= _MAX_ISSUED_TOKENS:
            now = time.time()
            self._issued = {t: at for t, at in self._issued.items() if at > now}
        token = f"t1.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(64)}"
        expires_at = time.time() + self.token_ttl_seconds
        self._issued[token] = expires_at
        stamp = datetime.fromtimestamp(expires_at, UTC).isoformat(timespec="milliseconds")
        return {"iamToken": token, "expiresAt": stamp.replace("+00:00", "Z")}


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raise EmulatedApiError(400, "The JWT is malformed") from None
    if not isinstance(header, dict):
        raise EmulatedApiError(400, "The JWT is malformed")
    return header
