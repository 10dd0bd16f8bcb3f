"""Proof Key for Code Exchange (RFC 7636), S256 only.

``plain`` is refused, and so is a missing method: RFC 7636 §4.3 makes a missing method mean
``plain``, which protects nothing once the authorization request is seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

S256 = "S256"
# RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# A S256 challenge is BASE64URL(SHA-256(verifier)) without padding: exactly 43 characters.
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


class PkceError(ValueError):
    """A PKCE parameter is missing or malformed; the message says which and why."""


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(challenge: str | None, method: str | None) -> None:
    """Accept only a well-formed S256 challenge; raise ``PkceError`` otherwise."""
    if not challenge:
        raise PkceError("code_challenge is required (PKCE with S256).")
    if method is None or method == "":
        raise PkceError(
            "code_challenge_method is required and must be S256 (a missing method means plain)."
        )
    if method != S256:
        raise PkceError(f"code_challenge_method '{method[:20]}' is not supported; use S256.")
    if not _S256_CHALLENGE.match(challenge):
        raise PkceError("code_challenge must be 43 base64url characters (SHA-256 of the verifier).")


def check_verifier(verifier: str | None) -> str:
    """The verifier if it has RFC 7636's length and alphabet; ``PkceError`` otherwise."""
    if not verifier:
        raise PkceError("code_verifier is required.")
    if not _VERIFIER.match(verifier):
        raise PkceError(
            "code_verifier must be 43 to 128 characters of letters, digits, '-', '.', '_', '~'."
        )
    return verifier


def verifier_matches(verifier: str, challenge: str, method: str) -> bool:
    """Whether ``verifier`` answers ``challenge``, compared in constant time."""
    if method != S256:
        return False
    return hmac.compare_digest(s256_challenge(verifier), challenge)
