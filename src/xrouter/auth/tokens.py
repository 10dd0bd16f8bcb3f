"""JWT access tokens (RFC 9068): issued RS256 with header ``typ: at+jwt`` and a ``kid``.

Verification trusts nothing in the token to choose how it is checked: the algorithm is pinned
to RS256, the key is looked up by ``kid`` among this server's own published keys only, and a
header naming a key or certificate elsewhere (``jku``, ``x5u``, ``jwk``, ``x5c``) or a ``crit``
extension refuses the token without anything being fetched. Verified tokens are cached by their
SHA-256 in a bounded LRU until they expire; every hit re-checks expiry and the denylist.

No JOSE library is imported here: a token can only be verified once the signing keys are
loaded, and loading them imports ``token_crypto`` (in a worker thread, see ``signing_keys``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xrouter.auth.revocation import Denylist
from xrouter.auth.signing_keys import ALGORITHM, SigningKeys
from xrouter.storage.models import new_id

TOKEN_TYPE = "at+jwt"  # noqa: S105 (RFC 9068 media type)
JTI_PREFIX = "at_"
MAX_TOKEN_LENGTH = 8192
# Tolerated clock difference for ``iat`` and ``nbf`` between instances.
CLOCK_SKEW_SECONDS = 60
_ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")


class TokenError(Exception):
    """The token is not a valid access token for this server; the message says why."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """The verified claims of an access token."""

    jti: str
    subject: str
    client_id: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int
    issuer: str
    audience: str

    def claims(self) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "exp": self.expires_at,
            "iat": self.issued_at,
            "jti": self.jti,
            "client_id": self.client_id,
            "scope": " ".join(sorted(self.scopes)),
        }


class AccessTokens:
    """Signs and verifies access tokens for one issuer and audience."""

    def __init__(
        self,
        keys: SigningKeys,
        denylist: Denylist,
        *,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._denylist = denylist
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, AccessToken] = OrderedDict()
        self._clock = clock

    def issue(
        self, subject: str, client_id: str, scopes: frozenset[str], *, lifetime: int | None = None
    ) -> tuple[str, AccessToken]:
        """A signed token and its claims (the caller records ``jti`` before handing it out)."""
        now = int(self._clock())
        token = AccessToken(
            jti=new_id(JTI_PREFIX),
            subject=subject,
            client_id=client_id,
            scopes=scopes,
            issued_at=now,
            expires_at=now + (lifetime if lifetime is not None else self.lifetime_seconds),
            issuer=self.issuer,
            audience=self.audience,
        )
        return self.sign(token.claims()), token

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """Sign ``claims`` with the current key (``header`` adds or overrides fields: tests).
        The keys must be active (``prepare_signing``)."""
        signer = self._keys.signer()
        # Loaded with the key the signer came from: only a lookup in sys.modules.
        from xrouter.auth.token_crypto import sign

        protected = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": signer.kid, **(header or {})}
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return sign(protected, payload, signer.key)

    async def prepare_signing(self) -> None:
        """Make sure this instance holds its signing keys (loads them on first use)."""
        await self._keys.activate()

    def verify(self, token: str) -> AccessToken:
        """The token's claims if it is valid, unexpired and not revoked; ``TokenError`` if not."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return self._still_valid(cached)
        verified = self._still_valid(self._verify_uncached(token))
        if self._cache_size:
            self._cache[digest] = verified
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified

    def forget(self) -> None:
        """Drop every cached verification (for tests and key changes)."""
        self._cache.clear()

    def _still_valid(self, token: AccessToken) -> AccessToken:
        if token.expires_at <= self._clock():
            raise TokenError("the access token has expired")
        if token.jti in self._denylist:
            raise TokenError("the access token has been revoked")
        return token

    def _verify_uncached(self, token: str) -> AccessToken:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise TokenError("not a signed JWT")
        header = _decode_segment(token.split(".", 1)[0], "header")
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"algorithm {str(header.get('alg'))[:16]!r} is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise TokenError("the token type (typ) is not at+jwt")
        if any(name in header for name in _FOREIGN_KEY_HEADERS):
            raise TokenError("key references in the header (jku, x5u, jwk, x5c, crit) are refused")
        kid = header.get("kid")
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("the signing key (kid) is unknown")
        # Loaded with the key: only a lookup in sys.modules.
        from xrouter.auth.token_crypto import verified_payload

        try:
            payload = verified_payload(token, key)
        except ValueError as error:
            raise TokenError("the signature is invalid") from error
        try:
            claims = json.loads(payload)
        except ValueError:
            raise TokenError("the payload is not JSON") from None
        if not isinstance(claims, dict):
            raise TokenError("the payload is not a JSON object")
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> AccessToken:
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise TokenError("the issuer (iss) is not this server")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise TokenError("the audience (aud) is not this API")
        times = [claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)]
        if not all(_is_number(value) for value in times):
            raise TokenError("exp, iat and nbf must be numbers")
        exp, iat, nbf = (float(value) for value in times)
        if exp <= now:
            raise TokenError("the access token has expired")
        if iat > now + CLOCK_SKEW_SECONDS or nbf > now + CLOCK_SKEW_SECONDS:
            raise TokenError("the token is not valid yet")
        text = {name: claims.get(name) for name in ("jti", "sub", "client_id", "scope")}
        if not all(isinstance(value, str) and value for value in text.values()):
            raise TokenError("jti, sub, client_id and scope must be non-empty strings")
        return AccessToken(
            jti=str(text["jti"]),
            subject=str(text["sub"]),
            client_id=str(text["client_id"]),
            scopes=frozenset(str(text["scope"]).split()),
            issued_at=int(iat),
            expires_at=int(exp),
            issuer=self.issuer,
            audience=self.audience,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise TokenError(f"the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the {what} is not a JSON object")
    return value
